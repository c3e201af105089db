"""Elementwise results written into an existing tensor without a full-size temporary (a decision about the
device's allocator, so it lives in ``kernels/``).

Ops such as ``hardswish_backward`` have no in-place or true ``out=`` form (their ``out=`` variants allocate and
copy). On the CPU a new tensor above glibc's mmap threshold (32 MB at most) is mapped afresh each time, and
its pages fault in on first write. That costs more than the arithmetic: ``hardswish_backward`` on a 38.5 MB
fp32 tensor (P2T-T's stage-1 IRB at 224², batch 8) takes 13.4 ms into a new tensor and 3.8 ms 1 MiB at a time
into an existing one (2 threads; 16 KiB pieces 9.3 ms, 8 MiB 6.2 ms). :func:`into` therefore evaluates the op
1 MiB at a time there; each piece is reused from malloc's free lists. Elsewhere (CUDA's caching allocator
reuses memory without that cost) it runs in one piece and copies.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["CPU_PIECE_BYTES", "into", "hardswish_backward_"]

CPU_PIECE_BYTES = 1 << 20


def into(out: Tensor, fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``out.copy_(fn(out, *args))`` for an elementwise ``fn`` of tensors of ``out``'s shape, all contiguous;
    on the CPU piece by piece (see the module docstring). Returns ``out``."""
    if not all(t.shape == out.shape and t.is_contiguous() for t in (out, *args)):
        shapes = ", ".join(f"{tuple(t.shape)} contiguous={t.is_contiguous()}" for t in (out, *args))
        raise ValueError(f"kernels.elementwise_into.into: every tensor must be contiguous with out's shape; "
                         f"got {shapes}")
    if out.device.type != "cpu":
        return out.copy_(fn(out, *args))
    flat = [t.view(-1) for t in (out, *args)]
    step = max(1, CPU_PIECE_BYTES // out.element_size())
    for start in range(0, out.numel(), step):
        pieces = [t[start:start + step] for t in flat]
        pieces[0].copy_(fn(*pieces))
    return out


def hardswish_backward_(grad: Tensor, x: Tensor) -> Tensor:
    """Hardswish's input gradient ``hardswish_backward(grad, x)`` written into ``grad`` (the same values)."""
    return into(grad, torch.ops.aten.hardswish_backward, x)
