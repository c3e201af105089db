"""Triton forward + backward of the state-returning selective scan (any d_state N >= 1).

Grid: one program per (batch * channel, state n). A program walks the sequence in blocks of ``BLOCK_L`` steps;
inside a block the pairs (abar_t, delta_t B_t u_t) are combined with ``tl.associative_scan`` under the
operator (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2), and the state at the block end is carried to the next
block. All arithmetic is fp32 whatever the input dtype (fp16 / bf16 / fp32 are loaded and upcast); the
states are written in fp32.

Backward (one program per (batch, channel), looping over the states; blocks in reverse time order): the
adjoint lambda_t = g_t + abar_{t+1} lambda_{t+1} is the same scan on reversed indices; with the forward states h
(the op's saved output, or recomputed by the forward kernel when not given) every gradient is local:
d(delta A)_t = lambda_t (h_t - delta_t B_t u_t), du = lambda B delta, dB = lambda delta u, ddelta through the
softplus. The sums over states (du, ddelta) stay inside the program; the sums over channels (dB) and batches
(dA, ddelta_bias) are taken by the wrapper from per-program partial buffers. No atomics: the backward is
deterministic (the partial dB buffer costs one fp32 tensor of h's size while the backward runs).

Triton is imported lazily by :mod:`kernels.selective_scan` only when ``impl="triton"`` (or ``"auto"`` on CUDA);
on CPU the kernels run under ``TRITON_INTERPRET=1``; ``python -m kernels.triton_aot`` compiles them for
sm_80 / sm_90 without a GPU (``aot_configs()`` lists the launch configurations). No ``tl.dot`` is used.
"""
from __future__ import annotations

import triton
import triton.language as tl
import torch

__all__ = ["selective_scan_triton_fwd", "selective_scan_triton_bwd"]


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _log1p(x):
    # accurate log(1 + x) without libdevice (Goldberg's trick)
    y = 1.0 + x
    z = y - 1.0
    return tl.where(z == 0.0, x, tl.log(y) * (x / tl.where(z == 0.0, 1.0, z)))


@triton.jit
def _delta(delta_ptr, bias_ptr, d, offs, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    v = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + d).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(v <= 20.0, _log1p(tl.exp(tl.minimum(v, 20.0))), v)
    else:
        dt = v
    return v, dt


@triton.jit
def _scan_fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, bias_ptr, h_ptr, D, N, L,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_L: tl.constexpr):
    bd = tl.program_id(0).to(tl.int64)  # 64-bit offsets: b * D * N * L may exceed 2^31
    n = tl.program_id(1)
    b = bd // D
    d = bd % D
    A = tl.load(A_ptr + d * N + n).to(tl.float32)
    carry = tl.sum(tl.zeros([BLOCK_L], dtype=tl.float32), axis=0)
    for start in range(0, L, BLOCK_L):
        t = start + tl.arange(0, BLOCK_L)
        mask = t < L
        u = tl.load(u_ptr + bd * L + t, mask=mask, other=0.0).to(tl.float32)
        Bv = tl.load(B_ptr + (b * N + n) * L + t, mask=mask, other=0.0).to(tl.float32)
        _, dt = _delta(delta_ptr + bd * L, bias_ptr, d, t, mask, HAS_BIAS, SOFTPLUS)
        a = tl.where(mask, tl.exp(dt * A), 1.0)
        x = tl.where(mask, dt * Bv * u, 0.0)
        acum, xcum = tl.associative_scan((a, x), 0, _combine)
        h = acum * carry + xcum
        tl.store(h_ptr + (bd * N + n) * L + t, h, mask=mask)
        last = tl.minimum(start + BLOCK_L, L) - 1
        carry = tl.sum(tl.where(t == last, h, 0.0), axis=0)


@triton.jit
def _scan_bwd_kernel(g_ptr, h_ptr, u_ptr, delta_ptr, A_ptr, B_ptr, bias_ptr,
                     du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dbias_ptr, D, N, L,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_L: tl.constexpr):
    # one program per (batch, channel) owns du[b, d, :] and ddelta[b, d, :] and loops over the states n, so
    # the sums over n need no atomics; the per-channel terms of dB and the per-batch terms of dA, dbias go
    # to partial buffers that the wrapper sums: the backward is deterministic
    bd = tl.program_id(0).to(tl.int64)
    b = bd // D
    d = bd % D
    zero = tl.sum(tl.zeros([BLOCK_L], dtype=tl.float32), axis=0)
    dbias_acc = zero
    for n in range(0, N):
        A = tl.load(A_ptr + d * N + n).to(tl.float32)
        carry = zero
        dA_acc = zero
        for start in range(0, L, BLOCK_L):
            i = start + tl.arange(0, BLOCK_L)
            t = L - 1 - i  # reversed time
            mask = t >= 0
            # abar_{t+1} (0 beyond the end)
            mask_next = mask & (t + 1 < L)
            _, dt_next = _delta(delta_ptr + bd * L, bias_ptr, d, t + 1, mask_next, HAS_BIAS, SOFTPLUS)
            a_next = tl.where(mask_next, tl.exp(dt_next * A), 0.0)
            g = tl.load(g_ptr + (bd * N + n) * L + t, mask=mask, other=0.0).to(tl.float32)
            a_next = tl.where(mask, a_next, 1.0)
            acum, gcum = tl.associative_scan((a_next, g), 0, _combine)
            lam = acum * carry + gcum
            last = tl.minimum(start + BLOCK_L, L) - 1
            carry = tl.sum(tl.where(i == last, lam, 0.0), axis=0)
            lam = tl.where(mask, lam, 0.0)

            v, dt = _delta(delta_ptr + bd * L, bias_ptr, d, t, mask, HAS_BIAS, SOFTPLUS)
            u = tl.load(u_ptr + bd * L + t, mask=mask, other=0.0).to(tl.float32)
            Bv = tl.load(B_ptr + (b * N + n) * L + t, mask=mask, other=0.0).to(tl.float32)
            # d(dt A) = lam_t exp(dt_t A) h_{t-1}, with the previous state itself: lam (h_t - dt B u) is the
            # same in exact arithmetic but cancels to fp32 noise when exp(dt A) is small
            h_prev = tl.load(h_ptr + (bd * N + n) * L + t - 1, mask=mask & (t > 0), other=0.0)
            dla = lam * tl.exp(dt * A) * h_prev
            dA_acc += tl.sum(dla * dt, axis=0)
            ddt = dla * A + lam * Bv * u
            if SOFTPLUS:
                ddt = tl.where(v <= 20.0, ddt * tl.sigmoid(v), ddt)
            ddt = tl.where(mask, ddt, 0.0)
            dbias_acc += tl.sum(ddt, axis=0)
            du = lam * Bv * dt
            # read-modify-write of this program's own du / ddelta entries: every tensor here has the one
            # blocked layout of t (no layout conversion in the compiled TTGIR), so each thread re-reads the
            # values it stored itself for the previous state and no barrier is needed
            if n > 0:  # this program wrote them for the previous states
                du += tl.load(du_ptr + bd * L + t, mask=mask, other=0.0)
                ddt += tl.load(ddelta_ptr + bd * L + t, mask=mask, other=0.0)
            tl.store(du_ptr + bd * L + t, du, mask=mask)
            tl.store(ddelta_ptr + bd * L + t, ddt, mask=mask)
            tl.store(dB_ptr + (bd * N + n) * L + t, lam * dt * u, mask=mask)
        tl.store(dA_ptr + bd * N + n, dA_acc)
    tl.store(dbias_ptr + bd, dbias_acc)  # (the sum of ddelta, returned even without a bias, as the other impls)


def _block(L: int) -> int:
    """Steps per block (a power of two; ``block_l=`` overrides it, e.g. to test the carry between blocks)."""
    return max(16, min(1024, triton.next_power_of_2(L)))


def _warps(block_l: int) -> int:
    """4 steps per thread (1 warp up to 128 steps, 8 warps for 1024): no register spills on sm_80 / sm_90
    (``python -m kernels.triton_aot``; 4 warps for 256 steps spilled on sm_90)."""
    return max(1, min(8, block_l // 128))


def aot_configs():
    """Launch configurations of the wrappers below, for :mod:`kernels.triton_aot` (GPU compile checks):
    Spatial-Mamba's sequence lengths at 224^2 (3136, 784, 196, 49 -> blocks 1024, 256, 64), fp32 and bf16
    inputs, with the delta bias and the softplus (the model's case)."""
    for L in (3136, 196, 49):
        for dtype in ("fp32", "bf16"):
            ptrs = {name: dtype for name in ("u_ptr", "delta_ptr", "B_ptr", "g_ptr")}
            for kernel in (_scan_fwd_kernel, _scan_bwd_kernel):
                # the backward at 256 steps spills 8 B on sm_80 with 2 warps (on sm_90 with 4: a ptxas quirk,
                # seen since it loads the previous state h_{t-1}); more would be a regression
                yield dict(name=f"selective_scan.{kernel.__name__[6:9]} L{L} {dtype}", kernel=kernel,
                           ptr_dtypes=ptrs, num_warps=_warps(_block(L)),
                           max_spill=8 if kernel is _scan_bwd_kernel else 0,
                           constexprs=dict(HAS_BIAS=True, SOFTPLUS=True, BLOCK_L=_block(L)))


def _prep(u, delta, A, B, delta_bias):
    if B.dim() == 4:
        B = B.squeeze(1)
    u, delta, A, B = (t.contiguous() for t in (u, delta, A, B))
    bias = delta_bias.contiguous() if delta_bias is not None else A  # dummy pointer when absent
    return u, delta, A, B, bias


def selective_scan_triton_fwd(u, delta, A, B, delta_bias=None, delta_softplus=True, block_l=None, num_warps=None):
    """States h (b, D, N, L) fp32 (computed in fp32; returned as fp64 for fp64 inputs, like the other impls).
    ``block_l`` / ``num_warps`` override the launch configuration (tests, the GPU suite's block sweep)."""
    u, delta, A, B, bias = _prep(u, delta, A, B, delta_bias)
    b, D, L = u.shape
    N = A.shape[1]
    h = torch.empty(b, D, N, L, device=u.device, dtype=torch.float32)
    if L == 0 or b * D == 0:
        return h
    block = block_l or _block(L)
    _scan_fwd_kernel[(b * D, N)](u, delta, A, B, bias, h, D, N, L, HAS_BIAS=delta_bias is not None,
                                 SOFTPLUS=bool(delta_softplus), BLOCK_L=block, num_warps=num_warps or _warps(block))
    return h.double() if u.dtype == torch.float64 else h


def selective_scan_triton_bwd(g, u, delta, A, B, delta_bias=None, delta_softplus=True, block_l=None, h=None,
                              num_warps=None):
    """(du, ddelta, dA, dB, ddelta_bias) for the upstream gradient g (b, D, N, L); ``h`` = the forward states
    when the caller kept them (recomputed when None)."""
    squeeze = B.dim() == 4
    if h is None:
        h = selective_scan_triton_fwd(u, delta, A, B, delta_bias, delta_softplus, block_l, num_warps)
    h = h.float().contiguous()
    u_, delta_, A_, B_, bias = _prep(u, delta, A, B, delta_bias)
    b, D, L = u_.shape
    N = A_.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(b, D, L, **f32)
    ddelta = torch.empty(b, D, L, **f32)
    dA = torch.zeros(b, D, N, **f32)  # per-batch partial sums (zero: also the result when L = 0)
    dB = torch.empty(b, D, N, L, **f32)  # per-channel terms (every entry written when L > 0)
    dbias = torch.zeros(b, D, **f32)  # per-batch partial sums
    block = block_l or _block(L)
    if L > 0 and b * D > 0:
        _scan_bwd_kernel[(b * D,)](g.contiguous(), h, u_, delta_, A_, B_, bias, du, ddelta, dA, dB, dbias,
                                   D, N, L, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                                   BLOCK_L=block, num_warps=num_warps or _warps(block))
    dA, dB, dbias = dA.sum(0), dB.sum(1), dbias.sum(0)
    if squeeze:
        dB = dB.unsqueeze(1)
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    return du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dbias.to(bias_dtype)
