"""RMT's Manhattan-decay attention: reference, PyTorch (SDPA) and compiled CPU paths.

Public entry point::

    out = manhattan_attention(q, k, v, decay, mode="full", scale=None, impl="auto", masks=None)

* ``q, k`` (B, n, H, W, d), ``v`` (B, n, H, W, dv), ``decay`` (n,) the per-head log decay ``log gamma_h < 0``
  (a fixed buffer in RMT: no gradient flows to it on the compiled path). Returns (B, n, H, W, dv).
* ``mode``: ``"full"`` (one softmax over all tokens with the mask ``g_h (|di| + |dj|)``) or ``"axial"`` (the
  official chunkwise mode: row attention, then column attention on its output); see ``naive.py``.
* ``scale``: logit scale (default d^-0.5; RMT pre-scales k and passes 1.0 like the official code).
* ``impl``:

  - ``"reference"``: the official three ops with explicit masks (``naive.py``);
  - ``"torch"``: the same layouts on PyTorch's fastest kernel for the device (``sdpa.py``: SDPA on CUDA and for the
    full mode on CPU);
  - ``"cpp"``: compiled for the CPU (``manhattan_cpu.cpp``: flash-style, the decay computed on the fly, so no
    mask and no probabilities are written to memory; the backward recomputes them from the log-sum-exp), built
    by ``python -m kernels.build_cpu``; registered as the ``rmt::manhattan_planes`` custom op (fake kernel,
    autograd), so ``torch.compile`` sees one op;
  - ``"auto"``: ``"cpp"`` on CPU tensors when it is built and ``decay`` needs no gradient, ``"torch"`` otherwise.

  While jit-tracing (FLOP counters) the reference runs, so that the counters see the official matmuls.
* ``masks``: the grid's :func:`manhattan_masks`, when the caller has built them (an RMT stage builds them once
  for all its blocks, as the official ``RetNetRelPos2d``); the reference and PyTorch paths build them otherwise.
  :func:`masks_needed` says whether the chosen path uses them at all.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .cpp_impl import cpp_available, cpp_unavailable_reason, manhattan_cpp, planes_backward, planes_forward
from .naive import MODES, manhattan_attention_reference, manhattan_masks
from .sdpa import biased_attention

__all__ = ["IMPLS", "MODES", "biased_attention", "manhattan_attention", "manhattan_attention_reference",
           "manhattan_masks", "masks_needed"]

IMPLS = ("reference", "torch", "cpp", "auto")


# ---------------------------------------------------------------------------------------- compiled planes op
@torch.library.custom_op("rmt::manhattan_planes", mutates_args=())
def _manhattan_planes(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    return planes_forward(q, k, v, g, scale)


@_manhattan_planes.register_fake
def _(q, k, v, g, scale):
    return q.new_empty(*q.shape[:3], v.shape[-1]), q.new_empty(q.shape[:3])


@torch.library.custom_op("rmt::manhattan_planes_bwd", mutates_args=())
def _manhattan_planes_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, g: Tensor,
                          scale: float) -> tuple[Tensor, Tensor, Tensor]:
    return planes_backward(grad_out, q, k, v, out, lse, g, scale)


@_manhattan_planes_bwd.register_fake
def _(grad_out, q, k, v, out, lse, g, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _planes_setup(ctx, inputs, output):
    q, k, v, g, scale = inputs
    ctx.save_for_backward(q, k, v, g, *output)
    ctx.scale = scale


def _planes_backward(ctx, grad_out, _grad_lse):
    q, k, v, g, out, lse = ctx.saved_tensors
    return (*_manhattan_planes_bwd(grad_out.contiguous(), q, k, v, out, lse, g, ctx.scale), None, None)


_manhattan_planes.register_autograd(_planes_backward, setup_context=_planes_setup)


def _attend_planes(q, k, v, g, scale):
    return _manhattan_planes(q, k, v, g, scale)[0]


# ---------------------------------------------------------------------------------------- entry point
def _resolve_impl(impl: str, x: Tensor, decay: Tensor | None = None) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return "reference"
    decay_grad = decay is not None and decay.requires_grad
    if impl == "auto":
        return "cpp" if x.device.type == "cpu" and cpp_available() and not decay_grad else "torch"
    if impl == "cpp":
        if x.device.type != "cpu":
            raise ValueError(f"impl='cpp' runs on CPU tensors, got {x.device.type} tensors")
        if decay_grad:
            raise ValueError("impl='cpp' gives no gradient for the decay (RMT's is a fixed buffer); use impl='torch'")
        if not cpp_available():
            raise RuntimeError("impl='cpp' was requested but the compiled CPU Manhattan attention is not built "
                               f"(run `python -m kernels.build_cpu`): {cpp_unavailable_reason()}")
    return impl


def masks_needed(x: Tensor, impl: str = "auto") -> bool:
    """Whether :func:`manhattan_attention` on tensors like ``x`` (and a decay without gradient) uses masks."""
    return _resolve_impl(impl, x) != "cpp"


def manhattan_attention(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, *, mode: str = "full",
                        scale: float | None = None, impl: str = "auto",
                        masks: tuple[Tensor, ...] | None = None) -> Tensor:
    """Manhattan-decay attention; see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if q.dim() != 5 or k.shape != q.shape or v.shape[:4] != q.shape[:4] or decay.shape != q.shape[1:2]:
        raise ValueError(f"expected q, k (B, n, H, W, d), v (B, n, H, W, dv), decay (n,); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}, {tuple(decay.shape)}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    impl = _resolve_impl(impl, q, decay)
    if impl == "reference":
        return manhattan_attention_reference(q, k, v, decay, mode, scale, masks)
    if impl == "torch":
        return manhattan_attention_reference(q, k, v, decay, mode, scale, masks, attend=biased_attention)
    return manhattan_cpp(_attend_planes, q, k, v, decay, mode, scale)
