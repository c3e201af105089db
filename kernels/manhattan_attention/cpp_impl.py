"""The compiled CPU path of the Manhattan attention (``manhattan_cpu.cpp``, flash-style, the decay computed on
the fly: neither the masks nor the probabilities are written to memory), and the layouts that map both modes onto
its planes: the full mode is one plane per (batch, head); the axial mode is two calls of planes of one grid line,
rows first (one plane per (batch, head, row)), then columns with the row output as the values.

Built by ``python -m kernels.build_cpu``; when it is not built, ``impl="auto"`` takes the PyTorch path and
``impl="cpp"`` says how to build it. Inputs are converted to the compute dtype (fp32; fp64 for fp64 inputs);
the outputs come back in the inputs' dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cpu_extension import CompiledExtension
from ..dtypes import compute_dtype

__all__ = ["cpp_available", "cpp_unavailable_reason", "manhattan_cpp", "planes_backward", "planes_forward"]

_EXT = CompiledExtension("Manhattan attention", "kernels.manhattan_attention._manhattan_cpu")


def cpp_available() -> bool:
    return _EXT.available


def cpp_unavailable_reason() -> str:
    return _EXT.reason


def planes_forward(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(out, lse) of contiguous planes q, k (P, H, W, d), v (P, H, W, dv), log decays g (P,)."""
    return tuple(_EXT.require()[0].fwd(q, k, v, g, scale))


def planes_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, g: Tensor,
                    scale: float) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(_EXT.require()[0].bwd(grad_out, q, k, v, out, lse, g, scale))


def _lines(x: Tensor, ct: torch.dtype) -> Tensor:
    """(B, n, L, M, c) -> contiguous (B n L, 1, M, c): one plane per grid line along the last grid axis."""
    b, n, lines, length, c = x.shape
    return x.to(ct).reshape(b * n * lines, 1, length, c).contiguous()


def _per_plane(g: Tensor, b: int, lines: int) -> Tensor:
    """The head's log decay for every plane (batch, head, line)."""
    return g[:, None].expand(b, g.shape[0], lines).contiguous().view(-1)


def manhattan_cpp(attend, q: Tensor, k: Tensor, v: Tensor, decay: Tensor, mode: str, scale: float) -> Tensor:
    """Both modes through ``attend(q, k, v, g, scale)``, the planes op (with its autograd)."""
    b, n, h, w, d = q.shape
    ct = compute_dtype(q)
    g = decay.detach().to(ct)
    if mode == "full":
        planes = [t.to(ct).reshape(b * n, h, w, t.shape[-1]).contiguous() for t in (q, k, v)]
        out = attend(*planes, _per_plane(g, b, 1), scale)
        return out.view(b, n, h, w, -1).to(q.dtype)
    rows = attend(_lines(q, ct), _lines(k, ct), _lines(v, ct), _per_plane(g, b, h), scale)
    rows = rows.view(b, n, h, w, -1).transpose(2, 3)
    cols = attend(_lines(q.transpose(2, 3), ct), _lines(k.transpose(2, 3), ct), _lines(rows, ct),
                  _per_plane(g, b, w), scale)
    return cols.view(b, n, w, h, -1).transpose(2, 3).to(q.dtype)
