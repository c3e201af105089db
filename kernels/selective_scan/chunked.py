"""Fast pure-PyTorch selective scan (the CPU default): chunked scan in log space with a hand-written backward.

The linear recurrence h_t = exp(la_t) * h_{t-1} + b_t (la = delta * A, b = delta * B * u) is solved in chunks
of ``chunk`` steps without a Python loop over time:

* inside a chunk, with the log-space prefix sums S_t = la_1 + ... + la_t (one ``cumsum``), the closed form
  h_t = exp(S_t) * cumsum_s(exp(-S_s) * b_s) gives every local state at once. It is exact algebra and
  numerically safe as long as |S| stays below ``_SAFE_EXP`` inside every chunk (checked at run time; when a
  chunk decays faster than that the chunk length is halved, down to 8 steps, and below that the call uses a
  log-depth Hillis-Steele scan on (exp(la), b) pairs inside the chunks, which is unconditionally stable);
* the chunk ends form a second, L/chunk times shorter recurrence (decay exp(S_end), input = local end state)
  that is solved by the same function recursively, and the carried-in state of every chunk is added back
  as exp(S_t) * H_prev.

The backward does not store the forward graph: it keeps only the inputs, recomputes h with one more
forward scan, runs the adjoint recurrence lambda_t = g_t + exp(la_{t+1}) * lambda_{t+1} with the same scan
on time-reversed tensors, and forms every gradient (u, delta, A, B, delta_bias) with a few vectorised
reductions. All arithmetic is fp32 (fp64 when the inputs are fp64); gradients are returned in the inputs'
dtypes.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

__all__ = ["linear_scan", "selective_scan_chunked", "selective_scan_chunked_bwd"]

DEFAULT_CHUNK = 64
# Largest |log-decay| accumulated inside one chunk for which exp(+-S) is safe in the closed form
# (e^60 ~ 1e26 leaves 12 orders of magnitude of fp32 headroom for the inputs).
_SAFE_EXP = 60.0


def _hillis_steele(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inclusive scan of (a, b) pairs along the last dim in ceil(log2 T) vectorised steps; returns h."""
    T = a.shape[-1]
    a, b = a.clone(), b.clone()
    k = 1
    while k < T:
        b[..., k:] = torch.addcmul(b[..., k:], a[..., k:], b[..., :-k])  # right side is evaluated first
        a[..., k:] = a[..., k:] * a[..., :-k]
        k *= 2
    return b


def linear_scan(la: torch.Tensor, b: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Solves h_t = exp(la_t) * h_{t-1} + b_t along the last dim (h_{-1} = 0) for float tensors of equal
    shape (..., L). No autograd graph per step; differentiable only through :func:`selective_scan_chunked`.

    The chunk length starts at ``chunk`` and is halved (down to 8) while some chunk accumulates more than
    ``_SAFE_EXP`` of log-decay; below that the chunks use the Hillis-Steele scan."""
    L = la.shape[-1]
    if L == 0:
        return b.clone()
    T = min(max(int(chunk), 2), L)  # chunk >= 2 so that the recursion over chunk ends shortens
    while True:
        nc = -(-L // T)
        T = max(-(-L // nc), 2)  # same number of chunks, least padding (L = 196 -> 4 x 49)
        pad = nc * T - L
        lap = F.pad(la, (0, pad)) if pad else la
        S = torch.cumsum(lap.reshape(*la.shape[:-1], nc, T), dim=-1)  # log-space prefix sums per chunk
        safe = bool(S.abs().amax() < _SAFE_EXP)
        if safe or T <= 8:
            break
        T = max(T // 2, 8)
    lead = la.shape[:-1]
    bp = (F.pad(b, (0, pad)) if pad else b).reshape(*lead, nc, T)
    if safe:
        local = torch.exp(S) * torch.cumsum(torch.exp(-S) * bp, dim=-1)
    else:  # some 8-step chunk decays by more than e^60: stable log-depth scan inside the chunks instead
        local = _hillis_steele(torch.exp(lap.reshape(*lead, nc, T)), bp)
    if nc > 1:
        # carry between chunks: H_c = exp(S_c,end) H_{c-1} + local_c,end, the same recurrence, L/T long
        ends = linear_scan(S[..., -1].contiguous(), local[..., -1].contiguous(), chunk)
        prev = F.pad(ends[..., :-1], (1, 0))
        local = torch.addcmul(local, torch.exp(S), prev.unsqueeze(-1))
    h = local.reshape(*lead, nc * T)
    return h[..., :L] if pad else h


def _prepare(u, delta, A, B, delta_bias, delta_softplus):
    ctype = torch.float64 if u.dtype == torch.float64 else torch.float32
    if B.dim() == 4:
        B = B.squeeze(1)
    v = delta.to(ctype)
    if delta_bias is not None:
        v = v + delta_bias.to(ctype)[:, None]
    dt = F.softplus(v) if delta_softplus else v
    Af = A.to(ctype)
    uf = u.to(ctype)
    Bf = B.to(ctype)
    la = dt[:, :, None, :] * Af[None, :, :, None]  # (b, D, N, L)
    dtu = dt * uf
    bu = dtu[:, :, None, :] * Bf[:, None, :, :]
    return v, dt, Af, uf, Bf, la, dtu, bu


def selective_scan_chunked(u, delta, A, B, delta_bias=None, delta_softplus=True, chunk=DEFAULT_CHUNK):
    """Forward only (no graph): returns h (b, D, N, L) in fp32 (fp64 for fp64 inputs)."""
    *_, la, _, bu = _prepare(u, delta, A, B, delta_bias, delta_softplus)
    return linear_scan(la, bu, chunk)


def selective_scan_chunked_bwd(g, u, delta, A, B, delta_bias=None, delta_softplus=True, chunk=DEFAULT_CHUNK):
    """Gradients (du, ddelta, dA, dB, ddelta_bias) of sum(g * h) by recompute + adjoint scan.
    ddelta_bias is returned as a (D,) tensor even when delta_bias is None."""
    squeeze_B = B.dim() == 4
    v, dt, Af, uf, Bf, la, dtu, bu = _prepare(u, delta, A, B, delta_bias, delta_softplus)
    g = g.to(la.dtype)
    h = linear_scan(la, bu, chunk)
    # adjoint: lam_t = g_t + exp(la_{t+1}) lam_{t+1}, i.e. the forward scan on reversed time
    la_next = F.pad(la[..., 1:], (0, 1))
    lam = linear_scan(la_next.flip(-1), g.flip(-1), chunk).flip(-1)
    dla = lam * (h - bu)  # = lam_t * exp(la_t) * h_{t-1}
    dA = torch.einsum('bdnl,bdl->dn', dla, dt)
    lamB = torch.einsum('bdnl,bnl->bdl', lam, Bf)  # sum_n lam * B
    ddt = torch.einsum('bdnl,dn->bdl', dla, Af) + lamB * uf
    du = lamB * dt
    dB = torch.einsum('bdnl,bdl->bnl', lam, dtu)
    if delta_softplus:
        ddelta = ddt * torch.where(v <= 20.0, torch.sigmoid(v), torch.ones_like(v))
    else:
        ddelta = ddt
    ddelta_bias = ddelta.sum(dim=(0, 2))
    if squeeze_B:
        dB = dB.unsqueeze(1)
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    return (du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), ddelta_bias.to(bias_dtype))
