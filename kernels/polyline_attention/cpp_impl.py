"""The compiled CPU paths of the polyline attention, both modes, forward and backward:

- ``criss_cross_cpu.cpp``: each axial attention is one task of loops over a single grid line, its probabilities
  kept in cache and recomputed where needed again, so that nothing of size N^1.5 is written to memory (the
  PyTorch path of ``criss_cross.py`` writes a dozen such tensors);
- ``full_cpu.cpp``: flash-style, one plane (batch x head) per task, a grid row of queries against every key in
  a (W x N) block that stays in cache; the backward recomputes it (``tiled.py`` is the PyTorch path).

Built by ``python -m kernels.build_cpu``; when they are not built, ``impl="auto"`` takes the PyTorch paths and
``impl="cpp"`` says how to build them. The log decays enter as their cumulative sums (``ca`` along W, ``cb``
along H), computed here in PyTorch, as are the reversed cumulative sums that turn their gradients into those of
``log_a`` / ``log_b``. Inputs are converted to the compute dtype (fp32; fp64 for fp64 inputs); outputs and
gradients come back in the inputs' dtypes.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cpu_extension import CompiledExtension
from ..dtypes import compute_dtype
from .tiled import _rev_cumsum

__all__ = ["cpp_available", "cpp_unavailable_reason", "polyline_cpp_backward", "polyline_cpp_forward"]

_EXT = CompiledExtension("polyline attention", "kernels.polyline_attention._criss_cross_cpu",
                         "kernels.polyline_attention._full_cpu")


def cpp_available() -> bool:
    return _EXT.available


def cpp_unavailable_reason() -> str:
    return _EXT.reason


def _require(mode: str):
    criss_cross, full = _EXT.require()
    return criss_cross if mode == "criss_cross" else full


def _planes(q, k, v, log_a, log_b):
    """(B, n, H, W, ...) -> contiguous (B * n, H, W, ...) in the compute dtype, decays as cumulative sums."""
    ct = compute_dtype(q)
    q, k, v = (t.flatten(0, 1).to(ct).contiguous() for t in (q, k, v))
    ca = torch.cumsum(log_a.flatten(0, 1).to(ct), -1).contiguous()
    cb = torch.cumsum(log_b.flatten(0, 1).to(ct), -2).contiguous()
    return q, k, v, ca, cb


def polyline_cpp_forward(mode: str, q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, log_b: Tensor,
                         scale: float = 1.0) -> Tensor:
    out = _require(mode).fwd(*_planes(q, k, v, log_a, log_b), float(scale))
    return out.view(*q.shape[:4], v.shape[-1]).to(q.dtype)


def polyline_cpp_backward(mode: str, grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, log_a: Tensor,
                          log_b: Tensor, scale: float = 1.0):
    """(dq, dk, dv, dlog_a, dlog_b)."""
    planes = _planes(q, k, v, log_a, log_b)
    g = grad_out.flatten(0, 1).to(planes[0].dtype).contiguous()
    dq, dk, dv, dca, dcb = _require(mode).bwd(g, *planes, float(scale))
    shape = q.shape[:4]
    return (dq.view(q.shape).to(q.dtype), dk.view(k.shape).to(k.dtype), dv.view(v.shape).to(v.dtype),
            _rev_cumsum(dca.view(shape), -1).to(log_a.dtype), _rev_cumsum(dcb.view(shape), -2).to(log_b.dtype))
