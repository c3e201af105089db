"""Readable sequential reference of the state-returning selective scan (Spatial-Mamba's "oflex_rh").

For every batch b, channel d, state n and time step t (raster order t = i * W + j):

    delta_{t,d}   = softplus(delta_raw_{t,d} + delta_bias_d)       (if delta_softplus; softplus(v) = v for v > 20)
    abar_{t,d,n}  = exp(delta_{t,d} * A_{d,n})                        (zero-order hold for A)
    h_{t,d,n}     = abar_{t,d,n} * h_{t-1,d,n} + delta_{t,d} * B_{t,n} * u_{t,d}   (Euler for B), h_{-1} = 0

and the op returns every state h_t, shape (batch, D, N, L), in fp32 whatever the input dtype (fp64 for fp64 inputs, for gradient checks). The math is
written for any d_state N >= 1 (the official CUDA kernel is only correct for N = 1).

Differentiable through plain autograd (one small graph per time step): slow, but the ground truth that the
fast paths are tested against.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..dtypes import compute_dtype  # what every path of the scan computes and returns in

__all__ = ["selective_scan_ref", "selective_scan_ref_bwd", "discretize", "compute_dtype"]


def discretize(u, delta, A, B, delta_bias=None, delta_softplus=True):
    """Returns (delta, abar, bu) in fp32 (fp64 for fp64 inputs): delta (b, D, L), abar (b, D, N, L), bu = delta * B * u (b, D, N, L)."""
    ctype = compute_dtype(u)
    u = u.to(ctype)
    delta = delta.to(ctype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ctype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # log1p(exp(v)) for v <= 20, v above (threshold 20), as the CUDA kernel
    abar = torch.exp(delta[:, :, None, :] * A.to(ctype)[None, :, :, None])
    bu = delta[:, :, None, :] * B.to(ctype)[:, None, :, :] * u[:, :, None, :]
    return delta, abar, bu


def selective_scan_ref(
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        delta_bias: Optional[torch.Tensor] = None,
        delta_softplus: bool = True,
) -> torch.Tensor:
    """Sequential reference. u, delta: (b, D, L); A: (D, N); B: (b, N, L) (or (b, 1, N, L));
    delta_bias: (D,) or None. Returns h: (b, D, N, L) fp32."""
    if B.dim() == 4:
        B = B.squeeze(1)
    _, abar, bu = discretize(u, delta, A, B, delta_bias, delta_softplus)
    h = torch.zeros_like(bu[..., 0])
    states = []
    for t in range(u.shape[-1]):
        h = abar[..., t] * h + bu[..., t]
        states.append(h)
    return torch.stack(states, dim=-1)


def selective_scan_ref_bwd(g, u, delta, A, B, delta_bias=None, delta_softplus=True):
    """Readable sequential backward of :func:`selective_scan_ref` for the upstream gradient g = dL/dh
    (b, D, N, L): the adjoint recurrence lam_t = g_t + abar_{t+1} * lam_{t+1} run backwards in time, then
    the chain rule through abar = exp(delta A), bu = delta B u and the softplus. Returns (du, ddelta, dA, dB,
    ddelta_bias), ddelta_bias as a (D,) tensor even without a bias. Used by the op's ``impl="reference"``."""
    squeeze = B.dim() == 4
    Bs = B.squeeze(1) if squeeze else B
    ctype = compute_dtype(u)
    v = delta.to(ctype) + (delta_bias.to(ctype)[:, None] if delta_bias is not None else 0)
    dt, abar, bu = discretize(u, delta, A, Bs, delta_bias, delta_softplus)
    g = g.to(ctype)
    L = u.shape[-1]
    # forward states (h_{t-1} is needed for d abar)
    h = torch.zeros_like(bu[..., 0])
    prev = []
    for t in range(L):
        prev.append(h)
        h = abar[..., t] * h + bu[..., t]
    lam = torch.zeros_like(h)
    dabar = torch.zeros_like(abar)
    dbu = torch.zeros_like(bu)
    for t in reversed(range(L)):
        lam = g[..., t] + (abar[..., t + 1] * lam if t + 1 < L else 0)
        dbu[..., t] = lam
        dabar[..., t] = lam * prev[t]
    Af, uf, Bf = A.to(ctype), u.to(ctype), Bs.to(ctype)
    dla = dabar * abar  # d/d(delta * A)
    ddt = (dla * Af[None, :, :, None]).sum(2) + (dbu * Bf[:, None]).sum(2) * uf
    du = (dbu * Bf[:, None]).sum(2) * dt
    dB = (dbu * (dt * uf)[:, :, None]).sum(1)
    dA = (dla * dt[:, :, None]).sum((0, 3))
    ddelta = ddt * torch.where(v <= 20, torch.sigmoid(v), torch.ones_like(v)) if delta_softplus else ddt
    dbias = ddelta.sum((0, 2))
    if squeeze:
        dB = dB.unsqueeze(1)
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    return du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dbias.to(bias_dtype)
