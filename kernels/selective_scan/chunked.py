"""Fast pure-PyTorch selective scan (the CPU default): chunked scan in log space with a hand-written backward.

The linear recurrence h_t = exp(la_t) * h_{t-1} + b_t (la = delta * A, b = delta * B * u) is solved in chunks
of about ``chunk`` steps without a Python loop over time:

* inside a chunk, with the log-space prefix sums S_t = la_1 + ... + la_t (one ``cumsum``) shifted by the
  midpoint m of the chunk's first and last S, and E = exp(S - m), the closed form
  h_t = E_t * cumsum_s(b_s / E_s) gives every local state at once (the shift cancels in E_t / E_s). It is
  exact algebra, and safe in fp32 as long as |S - m| stays below ``_SAFE_EXP`` in every chunk, i.e. a chunk
  decays (or grows) by less than e^120. This is checked at run time (from the chunk sums of la alone when
  la <= 0, which holds for a softplus delta and A <= 0: S is then monotone inside a chunk, and the prefix
  sums can overwrite la); when some chunk is too steep the chunks are shortened, down to 8 steps, and below
  that a log-depth Hillis-Steele scan on (exp(la), b) pairs runs inside the chunks, which is unconditionally
  stable. Chunk counts that divide L are preferred, so that no padded copies are made;
* the chunk ends form a second, L/chunk times shorter recurrence (decay exp(S_end), input = the chunk's
  local end state E_end * sum_s(b_s / E_s)), solved by a short loop of vectorised steps or, when long, by the
  same function recursively; the state carried into chunk c enters as exp(m_c) * H_{c-1} added to the first
  term of the chunk's cumulative sum, so one ``cumsum`` gives the final states.

The backward runs the adjoint recurrence lambda_t = g_t + exp(la_{t+1}) * lambda_{t+1} with the same prefix
sums read backwards: inside a chunk lambda_t = revcumsum_s(E_s g_s)_t / E_t, the adjoint carried in from the
following chunks added to the chunk's last term first (again a short recurrence over chunk ends). It then
forms every gradient (u, delta, A, B, delta_bias) with a few vectorised passes, in place wherever a
temporary allows: on CPU, fresh allocations (page faults) cost as much as the arithmetic at these sizes.
The forward states h and delta' = softplus(delta + delta_bias) are taken from the forward pass (the op
saves both; h is kept alive by the model anyway, and delta' replaces delta in the saved tensors) and
recomputed otherwise; no per-step graph is ever stored. All arithmetic is fp32 (fp64 when the inputs are
fp64); gradients are returned in the inputs' dtypes.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .naive import compute_dtype

__all__ = ["linear_scan", "linear_scan_adjoint", "selective_scan_chunked", "selective_scan_chunked_bwd",
           "discretized_delta", "selective_scan_chunked_bwd_dt"]

DEFAULT_CHUNK = 64
# Largest |S - m| (log of the decay from a chunk's midpoint) for which exp(+-(S - m)) is safe in the closed
# form: e^60 ~ 1e26 leaves 12 orders of magnitude of fp32 headroom for the inputs.
_SAFE_EXP = 60.0
# Chunk-end recurrences up to this length run as a loop of vectorised steps instead of recursing
_SHORT = 16


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


def _plan(L: int, T: int):
    """(chunk length, number of chunks, right padding) for about ``T`` steps per chunk: a chunk count that
    divides L when one is near (no padding copies: L = 196 -> 4 x 49, 3136 -> 49 x 64), else balanced chunks
    with the least padding."""
    T = max(int(T), 2)  # >= 2 so that the recurrence over chunk ends is shorter than L
    if L <= T:
        return L, 1, 0
    nc = -(-L // T)
    for k in range(nc, nc + nc // 2 + 1):
        if L % k == 0:
            return L // k, k, 0
    T = -(-L // nc)
    return T, nc, nc * T - L


def _chunked(x: torch.Tensor, nc: int, T: int, pad: int) -> torch.Tensor:
    return (F.pad(x, (0, pad)) if pad else x).reshape(*x.shape[:-1], nc, T)


def _unchunk(x: torch.Tensor, L: int) -> torch.Tensor:
    x = x.reshape(*x.shape[:-2], -1)
    return x[..., :L] if x.shape[-1] != L else x


def _shifted_prefix(la: torch.Tensor, chunk: int, nonpositive: Optional[bool], overwrite: bool = False):
    """Plans the chunks and returns (T, nc, pad, E, S_end, m) with E = exp(S - m) (..., nc, T), S the
    per-chunk prefix sums of la, S_end = S[..., -1] and m the per-chunk shift (..., nc); E is None when even
    8-step chunks are too steep for the closed form. The chunk length starts near ``chunk`` and is halved
    while some chunk is too steep. ``overwrite``: E may be computed in la's memory."""
    L = la.shape[-1]
    if nonpositive is None:
        nonpositive = bool(la.max() <= 0)
    T = chunk
    while True:
        T, nc, pad = _plan(L, T)
        lac = _chunked(la, nc, T, pad)
        if nonpositive:
            # S is non-increasing inside a chunk, so |S - m| <= (S_first - S_end) / 2 <= -sum(la) / 2: the
            # check needs the chunk sums only, and the prefix sums can then overwrite la (a padded la is
            # already a copy)
            safe = bool(lac.sum(dim=-1).min() > -2 * _SAFE_EXP)  # (False for NaN: the stable path propagates it)
            if not safe and T > 8:
                T = max(T // 2, 8)
                continue
            S = lac.cumsum_(dim=-1) if (safe and (overwrite or pad > 0)) else torch.cumsum(lac, dim=-1)
        else:
            S = torch.cumsum(lac, dim=-1)
        S_end = S[..., -1].clone()
        m = (S[..., 0] + S_end).mul_(0.5)
        S.sub_(m[..., None])
        if not nonpositive:  # the full range of S - m decides
            lo, hi = torch.aminmax(S)
            safe = bool(max(-float(lo), float(hi)) < _SAFE_EXP)
            if not safe and T > 8:
                T = max(T // 2, 8)
                continue
        return T, nc, pad, (S.exp_() if safe else None), S_end, m


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


def linear_scan(la: torch.Tensor, b: torch.Tensor, chunk: int = DEFAULT_CHUNK,
                nonpositive: Optional[bool] = None, overwrite: bool = False) -> torch.Tensor:
    """Solves h_t = exp(la_t) * h_{t-1} + b_t along the last dim (h_{-1} = 0) for float tensors of equal
    shape (..., L). ``nonpositive``: whether la <= 0 everywhere (checked when None); ``overwrite``: la and b
    are the caller's temporaries and may be overwritten (h then lives in b's memory). No autograd graph per
    step; differentiable only through :func:`selective_scan_chunked`."""
    L = la.shape[-1]
    if L == 0:
        return b.clone()
    overwrite = overwrite and la.is_contiguous() and b.is_contiguous()
    T, nc, pad, E, S_end, m = _shifted_prefix(la, chunk, nonpositive, overwrite)
    bp = _chunked(b, nc, T, pad)
    if E is None:  # some 8-step chunk changes by more than e^120: stable log-depth scan inside the chunks
        local = _hillis_steele(torch.exp(_chunked(la, nc, T, pad)), bp)
        if nc > 1:
            H = _carry(S_end, local[..., -1], chunk)
            S = torch.cumsum(_chunked(la, nc, T, pad), dim=-1)
            local[..., 1:, :] += torch.exp(S[..., 1:, :]) * H[..., :-1, None]
        return _unchunk(local, L)
    # h_t = E_t * (cumsum(x)_t + exp(m) * carried-in state), x = b / E
    x = bp.div_(E) if (overwrite or pad > 0) else bp / E  # (a padded b is already a copy)
    if nc > 1:
        # carry between chunks: H_c = exp(S_c,end) H_{c-1} + local_c,end, the same recurrence, nc long
        H = _carry(S_end, E[..., -1] * x.sum(dim=-1), chunk)
        x[..., 1:, 0] += torch.exp(m[..., 1:]) * H[..., :-1]
    return _unchunk(x.cumsum_(dim=-1).mul_(E), L)


def linear_scan_adjoint(la: torch.Tensor, g: torch.Tensor, chunk: int = DEFAULT_CHUNK,
                        nonpositive: Optional[bool] = None, overwrite: bool = False) -> torch.Tensor:
    """Solves the adjoint lam_t = g_t + exp(la_{t+1}) * lam_{t+1} (lam past the end = 0) along the last dim,
    i.e. lam = d(sum(g * h)) / db for h = linear_scan(la, b). ``overwrite``: la may be overwritten."""
    L = la.shape[-1]
    if L == 0:
        return g.clone()
    T, nc, pad, E, S_end, m = _shifted_prefix(la, chunk, nonpositive, overwrite and la.is_contiguous())
    if E is None:  # the forward scan on reversed time, with the decays shifted by one step
        la_next = F.pad(la[..., 1:], (0, 1))
        return linear_scan(la_next.flip(-1), g.flip(-1), chunk).flip(-1)
    # inside a chunk: lam_t = sum_{s >= t} exp(S_s - S_t) g_s = revcumsum(E g)_t / E_t
    y = E * _chunked(g, nc, T, pad)
    if nc > 1:
        # adjoint carried into chunk c < nc-1 from all later chunks: K_c = Q_{c+1} + exp(S_{c+1},end) K_{c+1}
        # with Q_c = sum_s exp(S_s) g_s over chunk c: the same short recurrence on reversed chunk order
        Q = torch.exp(m[..., 1:]) * y[..., 1:, :].sum(dim=-1)
        K = _carry(S_end[..., 1:].flip(-1), Q.flip(-1), chunk).flip(-1)
        y[..., :-1, -1] += E[..., :-1, -1] * K
    # reversed cumulative sum along the chunk (not as a matmul with a triangular ones matrix: matmuls follow
    # torch.set_float32_matmul_precision, which runs them in bf16 / tf32 when set to "medium" / "high")
    y = y.flip(-1).cumsum_(dim=-1)
    return _unchunk(y.flip(-1).div_(E), L)


# --------------------------------------------------------------------------------- selective scan
def discretized_delta(delta, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """delta' = softplus(delta + delta_bias) (without the softplus when ``delta_softplus`` is False) in fp32
    (fp64 for fp64 inputs); softplus(v) = v above 20, as the official kernel."""
    v = delta.to(compute_dtype(delta))
    if delta_bias is not None:
        v = v + delta_bias.to(v.dtype)[:, None]
        if delta_softplus:  # v is a temporary: the softplus can overwrite it
            return torch.ops.aten.softplus.out(v, 1, 20, out=v)
    return F.softplus(v) if delta_softplus else v


def _scan_terms(u, dt, A, B, need_bu=True):
    """la = delta' A (b, D, N, L), b = delta' B u (b, D, N, L) (None unless ``need_bu``), B as (b, N, L)."""
    ctype = dt.dtype
    Af, Bf = A.to(ctype), (B.squeeze(1) if B.dim() == 4 else B).to(ctype)
    la = dt[:, :, None, :] * Af[None, :, :, None]
    if not need_bu:
        return la, None, Bf
    dtu = (dt * u.to(ctype))[:, :, None, :]
    bu = dtu.mul_(Bf[:, None, :, :]) if Bf.shape[1] == 1 else dtu * Bf[:, None, :, :]
    return la, bu, Bf


def _nonpositive(dt_nonnegative: bool, A: torch.Tensor) -> Optional[bool]:
    # la = delta' A <= 0 when delta' >= 0 (softplus) and A <= 0 (Mamba's A = -exp(A_log)); None: check la
    return True if dt_nonnegative and bool(A.max() <= 0) else None


def selective_scan_chunked(u, delta, A, B, delta_bias=None, delta_softplus=True, chunk=DEFAULT_CHUNK,
                           return_dt: bool = False):
    """Forward only (no graph): h (b, D, N, L) in fp32 (fp64 for fp64 inputs), and delta' as well when
    ``return_dt`` (what the op saves for its backward instead of delta)."""
    dt = discretized_delta(delta, delta_bias, delta_softplus)
    la, bu, _ = _scan_terms(u, dt, A, B)
    h = linear_scan(la, bu, chunk, _nonpositive(delta_softplus, A), overwrite=True)
    if not return_dt:
        return h
    return h, (dt.clone() if dt is delta else dt)  # (an op's output must not alias its input)


def _dla(lam: torch.Tensor, h: torch.Tensor, la: torch.Tensor) -> torch.Tensor:
    """d(la_t) = lam_t * exp(la_t) * h_{t-1} (h_{-1} = 0), computed in ``la``'s memory. Not as
    lam * (h_t - delta'_t B_t u_t), the same in exact arithmetic: when exp(la_t) is small, h_t is almost all
    delta' B u and the difference cancels to fp32 noise that is large against the true value (seen: dA 1e-5 for
    a true 1e-10 at delta' A ~ -150), which Adam's per-parameter scaling would turn into full-size steps."""
    la.exp_()
    la[..., 1:].mul_(h[..., :-1])
    la[..., 0] = 0
    return la.mul_(lam)


def selective_scan_chunked_bwd_dt(g, u, dt, A, B, delta_softplus=True, chunk=DEFAULT_CHUNK,
                                  h: Optional[torch.Tensor] = None):
    """Gradients (du, ddelta, dA, dB, ddelta_bias) of sum(g * h) from delta' = softplus(delta + delta_bias)
    (the op's saved tensor) and the forward states ``h`` (recomputed when None); ddelta_bias is the (D,)
    sum of ddelta (meaningful only when the forward had a bias). Gradients in fp32 (fp64 for fp64 dt)."""
    squeeze_B = B.dim() == 4
    d1 = A.shape[1] == 1
    la, bu, Bf = _scan_terms(u, dt, A, B, need_bu=h is None)
    uf, Af = u.to(dt.dtype), A.to(dt.dtype)
    g = g.to(dt.dtype)
    nonpos = _nonpositive(delta_softplus, A)
    h = linear_scan(la, bu, chunk, nonpos) if h is None else h.to(dt.dtype)
    del bu
    lam = linear_scan_adjoint(la, g, chunk, nonpos, overwrite=True)
    del la
    if d1:  # d_state 1 (Spatial-Mamba): the state axis is a view, no reductions over it; few temporaries
        lam, h, B1 = lam[:, :, 0], h[:, :, 0], Bf[:, 0, None, :]
        lamB = lam * B1
        du = lamB * dt
        dla = _dla(lam, h, dt * Af[None])
        ddt = lamB.mul_(uf).addcmul_(dla, Af[None])
        dA = dla.mul_(dt).sum(dim=(0, 2)).unsqueeze(1)
        dB = lam.mul_(dt).mul_(uf).sum(dim=1, keepdim=True)
        if delta_softplus:
            # softplus'(v) = sigmoid(v) = 1 - exp(-softplus(v)) (1 above the threshold 20, to fp32 rounding)
            ddt.addcmul_(ddt, torch.neg(dt, out=dla).exp_(), value=-1)
    else:
        dla = _dla(lam, h, dt[:, :, None, :] * Af[None, :, :, None])
        dA = (dla * dt[:, :, None]).sum(dim=(0, 3))
        lamB = (lam * Bf[:, None]).sum(dim=2)
        ddt = torch.addcmul((dla * Af[None, :, :, None]).sum(dim=2), lamB, uf)
        dB = (lam * (dt * uf)[:, :, None]).sum(dim=1)
        du = lamB.mul_(dt)
        if delta_softplus:
            ddt.addcmul_(ddt, torch.exp(dt.neg()), value=-1)
    ddelta = ddt
    ddelta_bias = ddelta.sum(dim=(0, 2))
    if squeeze_B:
        dB = dB.unsqueeze(1)
    return du, ddelta, dA, dB, ddelta_bias


def selective_scan_chunked_bwd(g, u, delta, A, B, delta_bias=None, delta_softplus=True, chunk=DEFAULT_CHUNK,
                               h: Optional[torch.Tensor] = None):
    """Gradients (du, ddelta, dA, dB, ddelta_bias) of sum(g * h) by the adjoint scan, from the op's inputs;
    ``h`` = the forward states if the caller kept them (recomputed when None). ddelta_bias is returned as a
    (D,) tensor even when delta_bias is None. Gradients in the inputs' dtypes."""
    dt = discretized_delta(delta, delta_bias, delta_softplus)
    du, ddelta, dA, dB, dbias = selective_scan_chunked_bwd_dt(g, u, dt, A, B, delta_softplus, chunk, h)
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    return du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dbias.to(bias_dtype)
