"""The compiled CPU path of the selective scan (``scan_cpu.cpp``): softplus, decays, the sequential recurrence
and its adjoint with every gradient, as C++ loops that the compiler vectorises wherever a loop is not the
recurrence itself, a block of channels per task of ATen's thread pool. Built by ``python -m kernels.build_cpu``;
when it is not built, ``impl="auto"`` takes the chunked PyTorch path and ``impl="cpp"`` says how to build it.

Inputs are converted to the compute dtype (fp32; fp64 for fp64 inputs) and made contiguous here; gradients
come back in that dtype (the op casts them to the inputs'). fp32 exp / log1p are polynomials within a few ulp
of libm (``kernels/cpu_math.h``); fp64 uses libm.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..cpu_extension import CompiledExtension
from ..dtypes import compute_dtype

__all__ = ["cpp_available", "cpp_unavailable_reason", "selective_scan_cpp_fwd", "selective_scan_cpp_bwd"]

_EXT = CompiledExtension("selective scan", "kernels.selective_scan._scan_cpu")


def cpp_available() -> bool:
    return _EXT.available


def cpp_unavailable_reason() -> str:
    return _EXT.reason


def _require():
    return _EXT.require()[0]


def _c(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.to(dtype).contiguous()


def selective_scan_cpp_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Optional[Tensor],
                           delta_softplus: bool) -> tuple[Tensor, Tensor]:
    """(h (b, D, N, L), delta' (b, D, L)); B as (b, N, L) or (b, 1, N, L)."""
    ext, ct = _require(), compute_dtype(u)
    Bs = B.squeeze(1) if B.dim() == 4 else B
    bias = _c(delta_bias, ct) if delta_bias is not None else None
    h, dt = ext.fwd(_c(delta, ct), bias, delta_softplus, _c(A, ct), _c(u, ct), _c(Bs, ct))
    return h, dt


def selective_scan_cpp_bwd(g: Tensor, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, h: Tensor,
                           delta_softplus: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(du, ddelta, dA, dB, ddelta_bias) of sum(g * h) from delta' and the forward states h."""
    ext, ct = _require(), dt.dtype
    Bs = B.squeeze(1) if B.dim() == 4 else B
    du, ddelta, dA, dB, dbias = ext.bwd(_c(g, ct), dt.contiguous(), _c(u, ct), _c(A, ct), _c(Bs, ct), _c(h, ct),
                                        delta_softplus)
    return du, ddelta, dA, (dB.unsqueeze(1) if B.dim() == 4 else dB), dbias
