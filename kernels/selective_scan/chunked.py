"""Fast pure-PyTorch selective scan (the CPU default): chunked scan in log space with a hand-written backward.

The linear recurrence h_t = exp(la_t) * h_{t-1} + b_t (la = delta * A, b = delta * B * u) is solved in chunks
of ``chunk`` steps without a Python loop over time:

* inside a chunk, with the log-space prefix sums S_t = la_1 + ... + la_t (one ``cumsum``) and E = exp(S),
  the closed form h_t = E_t * cumsum_s(b_s / E_s) gives every local state at once. It is exact algebra and
  numerically safe as long as |S| stays below ``_SAFE_EXP`` inside every chunk (checked at run time; when a
  chunk decays faster than that the chunk length is halved, down to 8 steps, and below that the call uses a
  log-depth Hillis-Steele scan on (exp(la), b) pairs inside the chunks, which is unconditionally stable);
* the chunk ends form a second, L/chunk times shorter recurrence (decay exp(S_end), input = local end state)
  that is solved by the same function recursively, and the carried-in state H of every chunk is added back
  as E_t * (cumsum + H).

The backward runs the adjoint recurrence lambda_t = g_t + exp(la_{t+1}) * lambda_{t+1} with the same prefix
sums S read backwards: inside a chunk lambda_t = (revcumsum_s(E_s g_s) + E_end R) / E_t, where R is the
adjoint carried in from the following chunks (again a short recurrence over the chunk ends). The reversed
cumulative sum adds the small terms first, so the division by E_t loses nothing. It then forms every
gradient (u, delta, A, B, delta_bias) with a few vectorised reductions. The forward states h are taken from
the forward pass when the caller has them (the op saves its output, which the model keeps alive anyway) and
recomputed otherwise; no per-step graph is ever stored. All arithmetic is fp32 (fp64 when the inputs are
fp64); gradients are returned in the inputs' dtypes.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["linear_scan", "linear_scan_adjoint", "selective_scan_chunked", "selective_scan_chunked_bwd"]

DEFAULT_CHUNK = 64
# Largest |log-decay| accumulated inside one chunk for which exp(+-S) is safe in the closed form
# (e^60 ~ 1e26 leaves 12 orders of magnitude of fp32 headroom for the inputs).
_SAFE_EXP = 60.0
# Chunk-end recurrences up to this length run as a loop of vectorised steps instead of recursing
_SHORT = 8


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


def _chunk_prefix(la: torch.Tensor, chunk: int):
    """Chunk length T, number of chunks nc, right padding, the per-chunk prefix sums S (..., nc, T) of la
    and whether exp(+-S) is safe. T starts at ``chunk`` and is halved (down to 8) while unsafe."""
    L = la.shape[-1]
    T = min(max(int(chunk), 2), L)  # chunk >= 2 so that the recursion over chunk ends shortens
    while True:
        nc = -(-L // T)
        T = max(-(-L // nc), 2)  # same number of chunks, least padding (L = 196 -> 4 x 49)
        pad = nc * T - L
        lap = F.pad(la, (0, pad)) if pad else la
        S = torch.cumsum(lap.reshape(*la.shape[:-1], nc, T), dim=-1)
        lo, hi = torch.aminmax(S)
        safe = bool(torch.maximum(-lo, hi) < _SAFE_EXP)
        if safe or T <= 8:
            return T, nc, pad, S, safe
        T = max(T // 2, 8)


def _chunked(x: torch.Tensor, nc: int, T: int, pad: int) -> torch.Tensor:
    return (F.pad(x, (0, pad)) if pad else x).reshape(*x.shape[:-1], nc, T)


def _unchunk(x: torch.Tensor, L: int) -> torch.Tensor:
    x = x.reshape(*x.shape[:-2], -1)
    return x[..., :L] if x.shape[-1] != L else x


def _carry(la: torch.Tensor, b: torch.Tensor, chunk: int) -> torch.Tensor:
    """The recurrence over chunk ends (length nc): a few vectorised steps when short, else recursively."""
    n = la.shape[-1]
    if n > _SHORT:
        return linear_scan(la.contiguous(), b.contiguous(), chunk)
    a = torch.exp(la)
    h = b.clone()
    for c in range(1, n):
        h[..., c].addcmul_(a[..., c], h[..., c - 1])
    return h


def linear_scan(la: torch.Tensor, b: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Solves h_t = exp(la_t) * h_{t-1} + b_t along the last dim (h_{-1} = 0) for float tensors of equal
    shape (..., L). No autograd graph per step; differentiable only through :func:`selective_scan_chunked`."""
    L = la.shape[-1]
    if L == 0:
        return b.clone()
    T, nc, pad, S, safe = _chunk_prefix(la, chunk)
    bp = _chunked(b, nc, T, pad)
    if not safe:  # some 8-step chunk decays by more than e^60: stable log-depth scan inside the chunks
        local = _hillis_steele(torch.exp(_chunked(la, nc, T, pad)), bp)
        if nc > 1:
            H = _carry(S[..., -1], local[..., -1], chunk)
            local[..., 1:, :] += torch.exp(S[..., 1:, :]) * H[..., :-1, None]
        return _unchunk(local, L)
    E = torch.exp(S)
    C = torch.cumsum(bp / E, dim=-1)  # h_t = E_t * (C_t + carried-in state)
    if nc > 1:
        # carry between chunks: H_c = exp(S_c,end) H_{c-1} + local_c,end, the same recurrence, nc long
        H = _carry(S[..., -1], E[..., -1] * C[..., -1], chunk)
        C[..., 1:, :] += H[..., :-1, None]
    return _unchunk(C.mul_(E), L)


def linear_scan_adjoint(la: torch.Tensor, g: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Solves the adjoint lam_t = g_t + exp(la_{t+1}) * lam_{t+1} (lam past the end = 0) along the last dim,
    i.e. lam = d(sum(g * h)) / db for h = linear_scan(la, b)."""
    L = la.shape[-1]
    if L == 0:
        return g.clone()
    T, nc, pad, S, safe = _chunk_prefix(la, chunk)
    if not safe:  # the forward scan on reversed time, with the decays shifted by one step
        la_next = F.pad(la[..., 1:], (0, 1))
        return linear_scan(la_next.flip(-1), g.flip(-1), chunk).flip(-1)
    E = torch.exp(S)
    # inside a chunk: lam_t = sum_{s >= t} exp(S_s - S_t) g_s = revcumsum(E g)_t / E_t
    R = torch.cumsum((E * _chunked(g, nc, T, pad)).flip(-1), dim=-1).flip(-1)
    if nc > 1:
        # adjoint carried into chunk c < nc-1 from all later chunks: K_c = Q_{c+1} + exp(S_{c+1},end) K_{c+1}
        # (Q = a chunk's revcumsum at its first step), the same short recurrence on reversed chunk order
        K = _carry(S[..., 1:, -1].flip(-1), R[..., 1:, 0].flip(-1), chunk).flip(-1)
        R[..., :-1, :] += (E[..., :-1, -1] * K)[..., None]
    return _unchunk(R.div_(E), L)


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


def selective_scan_chunked_bwd(g, u, delta, A, B, delta_bias=None, delta_softplus=True, chunk=DEFAULT_CHUNK,
                               h: Optional[torch.Tensor] = None):
    """Gradients (du, ddelta, dA, dB, ddelta_bias) of sum(g * h) by the adjoint scan; ``h`` = the forward
    states if the caller kept them (recomputed when None). ddelta_bias is returned as a (D,) tensor even when
    delta_bias is None."""
    squeeze_B = B.dim() == 4
    v, dt, Af, uf, Bf, la, dtu, bu = _prepare(u, delta, A, B, delta_bias, delta_softplus)
    g = g.to(la.dtype)
    h = linear_scan(la, bu, chunk) if h is None else h.to(la.dtype)
    lam = linear_scan_adjoint(la, g, chunk)
    dla = torch.sub(h, bu).mul_(lam)  # = lam_t * exp(la_t) * h_{t-1}
    if A.shape[1] == 1:  # d_state 1 (Spatial-Mamba): the state axis is a view, no reductions over it
        dla1, lam1 = dla[:, :, 0], lam[:, :, 0]
        dA = (dla1 * dt).sum(dim=(0, 2)).unsqueeze(1)
        lamB = lam1 * Bf[:, 0, None, :]
        ddt = torch.addcmul(dla1 * Af, lamB, uf)
        dB = (lam1 * dtu).sum(dim=1, keepdim=True)
    else:
        dA = (dla * dt[:, :, None]).sum(dim=(0, 3))
        lamB = (lam * Bf[:, None]).sum(dim=2)
        ddt = torch.addcmul((dla * Af[None, :, :, None]).sum(dim=2), lamB, uf)
        dB = (lam * dtu[:, :, None]).sum(dim=1)
    du = lamB.mul_(dt)
    if delta_softplus:  # softplus'(v) = sigmoid(v); 1 above the threshold 20 (already exact in fp32)
        sig = torch.sigmoid(v)
        if v.dtype == torch.float64:
            sig = torch.where(v <= 20.0, sig, torch.ones_like(v))
        ddelta = ddt.mul_(sig)
    else:
        ddelta = ddt
    ddelta_bias = ddelta.sum(dim=(0, 2))
    if squeeze_B:
        dB = dB.unsqueeze(1)
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    return (du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), ddelta_bias.to(bias_dtype))
