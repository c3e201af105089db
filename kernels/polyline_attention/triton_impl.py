"""Triton forward + backward for full-mode polyline attention (two online softmaxes, masks built on the fly).

Imported lazily by ``kernels.polyline_attention`` only when ``impl="triton"`` is selected. Tested on CPU
under ``TRITON_INTERPRET=1`` at small shapes. Layout: q, k (BN, N, d), v (BN, N, dv) with BN = B * n heads;
prefix sums ``ca`` (cumsum of log_a along W) and ``cb`` (cumsum of log_b along H) as (BN, H, W) fp32.

Per (query tile, key tile) with flat indices p -> (i, j) = (p // W, p % W) the kernel gathers
``ca[iq, jq], ca[iq, jk], cb[iq, jk], cb[ik, jk]`` (for M) and ``ca[ik, jk], ca[ik, jq], cb[ik, jq],
cb[iq, jq]`` (for M^T), so any tiling of the flat token axis works (H, W arbitrary).

Two tile layouts: ``"flat"`` (this module's kernels, the default) and ``"rows"`` (:mod:`.triton_rows`: tiles
are segments of one image row, so the prefix-sum gathers below become 1-D loads); :func:`use_layout` switches,
the GPU suite times both.

Backward: one program per key tile loops over all query tiles, accumulates dk, dv in registers, and adds
dq and the prefix-sum gradients (dca, dcb) with atomics (so dq, d log_a, d log_b are not bitwise
deterministic on a GPU); the terms indexed by (query row, key column) and (key row, query column) are summed
per image row inside the tile before their atomics. The torch wrapper turns dca, dcb into d log_a, d log_b
with reversed cumulative sums. ``python -m kernels.triton_aot`` compiles both kernels for sm_80 / sm_90
without a GPU (``aot_configs()`` lists the launch configurations) and reports registers and spills.

Dots: fp32 inputs run fp32 dots at IEEE precision (no TF32); fp16 / bf16 inputs (q, k, v of one dtype) run
tensor-core dots on operands in that dtype with fp32 accumulation, the probabilities and score gradients cast
to it first (as flash attention); masks, softmax statistics and accumulators stay fp32. bf16 takes that path
on GPUs only: under the interpreter a bf16 ``tl.dot`` is wrong, so CPU tensors in bf16 are upcast (fp16 dots
are right there, which is how the half path is tested on CPU).
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import triton
import triton.language as tl

from .tiled import _rev_cumsum
from .triton_rows import rows_backward_kernel, rows_forward_kernel
from .triton_tiles import backward_pair, dot, load_query_side, load_tile, softmax_pair_step, store_forward

__all__ = ["LAYOUTS", "triton_full_backward", "triton_full_forward", "use_layout"]


@triton.jit
def _tile_masks(ca_ptr, cb_ptr, W, iq, jq, ik, jk, mq, mk, caq, cbq, cak, cbk):
    """Log-mask tiles M and M^T (BLOCK_M, BLOCK_N) plus the position signs."""
    m2d = mq[:, None] & mk[None, :]
    ca_qk = tl.load(ca_ptr + iq[:, None] * W + jk[None, :], mask=m2d, other=0.0)
    cb_qk = tl.load(cb_ptr + iq[:, None] * W + jk[None, :], mask=m2d, other=0.0)
    ca_kq = tl.load(ca_ptr + ik[None, :] * W + jq[:, None], mask=m2d, other=0.0)
    cb_kq = tl.load(cb_ptr + ik[None, :] * W + jq[:, None], mask=m2d, other=0.0)
    sgn_j = (jq[:, None] > jk[None, :]).to(tl.float32) - (jq[:, None] < jk[None, :]).to(tl.float32)
    sgn_i = (iq[:, None] > ik[None, :]).to(tl.float32) - (iq[:, None] < ik[None, :]).to(tl.float32)
    m1 = (caq[:, None] - ca_qk) * sgn_j + (cb_qk - cbk[None, :]) * sgn_i
    m2 = (ca_kq - cak[None, :]) * sgn_j + (cbq[:, None] - cb_kq) * sgn_i
    return m1, m2, sgn_j, sgn_i, m2d


@triton.jit
def _fwd_kernel(q_ptr, k_ptr, v_ptr, ca_ptr, cb_ptr, o1_ptr, o2_ptr, lse1_ptr, lse2_ptr,
                N, W, D, DV, scale,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                HALF_DOTS: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    q_ptr += bh * N * D
    k_ptr += bh * N * D
    v_ptr += bh * N * DV
    ca_ptr += bh * N
    cb_ptr += bh * N
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mq = offs_m < N
    iq = offs_m // W
    jq = offs_m % W
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = load_tile(q_ptr, offs_m, mq, offs_d, D)
    if not HALF_DOTS:
        q = q.to(tl.float32)
    caq = tl.load(ca_ptr + offs_m, mask=mq, other=0.0)
    cbq = tl.load(cb_ptr + offs_m, mask=mq, other=0.0)
    m_1 = tl.full([BLOCK_M], float("-inf"), tl.float32)
    m_2 = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_1 = tl.zeros([BLOCK_M], tl.float32)
    l_2 = tl.zeros([BLOCK_M], tl.float32)
    acc1 = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mk = offs_n < N
        k = load_tile(k_ptr, offs_n, mk, offs_d, D)
        v = load_tile(v_ptr, offs_n, mk, offs_dv, DV)
        if not HALF_DOTS:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        cak = tl.load(ca_ptr + offs_n, mask=mk, other=0.0)
        cbk = tl.load(cb_ptr + offs_n, mask=mk, other=0.0)
        s = dot(q, tl.trans(k), HALF_DOTS) * scale
        mask1, mask2, sgn_j, sgn_i, m2d = _tile_masks(ca_ptr, cb_ptr, W, iq, jq, offs_n // W, offs_n % W, mq, mk,
                                                      caq, cbq, cak, cbk)
        m_1, m_2, l_1, l_2, acc1, acc2 = softmax_pair_step(s, mask1, mask2, mk, v, m_1, m_2, l_1, l_2, acc1, acc2,
                                                           HALF_DOTS)
    store_forward(o1_ptr + bh * N * DV, o2_ptr + bh * N * DV, lse1_ptr + bh * N, lse2_ptr + bh * N, offs_m, mq,
                  offs_dv, DV, acc1, acc2, m_1, m_2, l_1, l_2)


@triton.jit
def _bwd_kernel(q_ptr, k_ptr, v_ptr, ca_ptr, cb_ptr, do_ptr, lse1_ptr, lse2_ptr, d1_ptr, d2_ptr,
                dq_ptr, dk_ptr, dv_ptr, dca_ptr, dcb_ptr,
                N, W, D, DV, scale,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                ROWS_Q: tl.constexpr, ROWS_K: tl.constexpr, HALF_DOTS: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    q_ptr += bh * N * D
    k_ptr += bh * N * D
    v_ptr += bh * N * DV
    do_ptr += bh * N * DV
    dq_ptr += bh * N * D
    dk_ptr += bh * N * D
    dv_ptr += bh * N * DV
    ca_ptr += bh * N
    cb_ptr += bh * N
    dca_ptr += bh * N
    dcb_ptr += bh * N
    lse1_ptr += bh * N
    lse2_ptr += bh * N
    d1_ptr += bh * N
    d2_ptr += bh * N
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mk = offs_n < N
    ik = offs_n // W
    jk = offs_n % W
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    kmask = mk[:, None] & (offs_d[None, :] < D)
    vmask = mk[:, None] & (offs_dv[None, :] < DV)
    k = load_tile(k_ptr, offs_n, mk, offs_d, D)
    v = load_tile(v_ptr, offs_n, mk, offs_dv, DV)
    if not HALF_DOTS:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    cak = tl.load(ca_ptr + offs_n, mask=mk, other=0.0)
    cbk = tl.load(cb_ptr + offs_n, mask=mk, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    dcak = tl.zeros([BLOCK_N], tl.float32)
    dcbk = tl.zeros([BLOCK_N], tl.float32)
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mq = offs_m < N
        iq = offs_m // W
        jq = offs_m % W
        qmask = mq[:, None] & (offs_d[None, :] < D)
        q, do, caq, cbq, lse1, lse2, d1, d2 = load_query_side(q_ptr, do_ptr, ca_ptr, cb_ptr, lse1_ptr, lse2_ptr,
                                                              d1_ptr, d2_ptr, offs_m, mq, offs_d, offs_dv, D, DV, v,
                                                              HALF_DOTS)
        s = dot(q, tl.trans(k), HALF_DOTS) * scale
        mask1, mask2, sgn_j, sgn_i, m2d = _tile_masks(ca_ptr, cb_ptr, W, iq, jq, ik, jk, mq, mk, caq, cbq, cak, cbk)
        dv_t, dk_t, dq, g1, g2 = backward_pair(q, k, v, do, s, mask1, mask2, m2d, lse1, lse2, d1, d2, scale,
                                               HALF_DOTS)
        dv += dv_t
        dk += dk_t
        tl.atomic_add(dq_ptr + offs_m[:, None] * D + offs_d[None, :], dq, mask=qmask)
        # M = (ca[iq,jq] - ca[iq,jk]) sj + (cb[iq,jk] - cb[ik,jk]) si
        # M^T = (ca[ik,jq] - ca[ik,jk]) sj + (cb[iq,jq] - cb[ik,jq]) si
        g1j = g1 * sgn_j
        g1i = g1 * sgn_i
        g2j = g2 * sgn_j
        g2i = g2 * sgn_i
        tl.atomic_add(dca_ptr + offs_m, tl.sum(g1j, 1), mask=mq)
        tl.atomic_add(dcb_ptr + offs_m, tl.sum(g2i, 1), mask=mq)
        # the terms at (query row iq, key column jk) and (key row ik, query column jq): a tile of consecutive
        # tokens spans only ROWS_* image rows, so the tile is first summed per row (ROWS x BLOCK atomics
        # instead of BLOCK_M x BLOCK_N, which would hit each address up to min(W, BLOCK) times); ROWS_* = 0:
        # rows too short for that to pay, one atomic per tile entry
        if ROWS_Q > 0:
            iq0 = start_m // W
            q_end = tl.minimum(start_m + BLOCK_M, N)
            for r in tl.static_range(ROWS_Q):
                sel = (iq == iq0 + r)[:, None]
                ok = mk & ((iq0 + r) * W < q_end)  # (the row starts before the tile ends)
                tl.atomic_add(dca_ptr + (iq0 + r) * W + jk, -tl.sum(tl.where(sel, g1j, 0.0), 0), mask=ok)
                tl.atomic_add(dcb_ptr + (iq0 + r) * W + jk, tl.sum(tl.where(sel, g1i, 0.0), 0), mask=ok)
        else:
            tl.atomic_add(dca_ptr + iq[:, None] * W + jk[None, :], -g1j, mask=m2d)
            tl.atomic_add(dcb_ptr + iq[:, None] * W + jk[None, :], g1i, mask=m2d)
        if ROWS_K > 0:
            ik0 = (pid_n * BLOCK_N) // W
            k_end = tl.minimum(pid_n * BLOCK_N + BLOCK_N, N)
            for r in tl.static_range(ROWS_K):
                sel = (ik == ik0 + r)[None, :]
                ok = mq & ((ik0 + r) * W < k_end)
                tl.atomic_add(dca_ptr + (ik0 + r) * W + jq, tl.sum(tl.where(sel, g2j, 0.0), 1), mask=ok)
                tl.atomic_add(dcb_ptr + (ik0 + r) * W + jq, -tl.sum(tl.where(sel, g2i, 0.0), 1), mask=ok)
        else:
            tl.atomic_add(dca_ptr + ik[None, :] * W + jq[:, None], g2j, mask=m2d)
            tl.atomic_add(dcb_ptr + ik[None, :] * W + jq[:, None], -g2i, mask=m2d)
        dcbk -= tl.sum(g1i, 0)
        dcak -= tl.sum(g2j, 0)
    tl.store(dk_ptr + offs_n[:, None] * D + offs_d[None, :], dk, mask=kmask)
    tl.store(dv_ptr + offs_n[:, None] * DV + offs_dv[None, :], dv, mask=vmask)
    tl.atomic_add(dca_ptr + offs_n, dcak, mask=mk)
    tl.atomic_add(dcb_ptr + offs_n, dcbk, mask=mk)


def _blocks(d: int, dv: int, half: bool, backward: bool, W: int):
    """(BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, num_warps, num_stages) of one kernel for images of width W.

    Head dims <= 32 (PPMA's): the fastest launch configurations of the GPU suite's sweep on an H200 (N = 4200 as
    60 x 70, B 8, 8 heads; ``benchmarks/GPU.md``): fp32 dots 32 x 32 tiles with 4 warps (1.4-1.5x faster than
    8 warps); tensor-core dots 32 queries x 16 keys with 4 warps forward, and 64 x 32 with 4 warps and 2
    pipeline stages backward (1.5x faster than 32 x 16). Some of these spill a little (``python -m
    kernels.triton_aot`` reports it; :data:`_SPILL_ALLOWANCE`) and are faster anyway. They were measured with
    the backward's row-grouped atomics, so narrower images, where the larger tiles span too many rows for that
    (:func:`_rows`), keep the earlier spill-free choices, as do larger head dims (not measured on a GPU yet)."""
    bd = max(16, triton.next_power_of_2(d))
    bdv = max(16, triton.next_power_of_2(dv))
    small = max(bd, bdv) <= 32
    if half:
        if backward and small and _rows(64, W) and _rows(32, W):
            return 64, 32, bd, bdv, 4, 2
        return (32 if small else 16), 16, bd, bdv, 4, 3
    if small and (not backward or _rows(32, W)):
        return 32, 32, bd, bdv, 4, 3
    bm = 32 if max(bd, bdv) <= 64 else 16
    return bm, bm, bd, bdv, 8, 3


# a row-grouped reduction of the backward's (row, column) terms pays while a tile spans at most this many rows
_MAX_ROWS = 4


def _rows(block: int, W: int) -> int:
    """Image rows a tile of ``block`` consecutive tokens can span (any start), or 0 when more than _MAX_ROWS."""
    rows = (block - 2) // W + 2 if block > 1 else 1
    return rows if rows <= _MAX_ROWS else 0


# register spills (bytes, the larger of stores and loads, sm_80 and sm_90) accepted for the configurations of
# _blocks chosen by measured speed, by (BLOCK_M, BLOCK_N, num_warps, half dots), and for the row layout by
# ("rows", segment, half dots); every other configuration must not spill. More than this is a regression that
# kernels.triton_aot reports.
_SPILL_ALLOWANCE = {(32, 32, 4, False): 64, (64, 32, 4, True): 384,
                    # the row layout's 32-column backward (4 or 8 warps alike) until a GPU run measures it
                    ("rows", 32, False): 96, ("rows", 32, True): 192}


def aot_configs():
    """Launch configurations of the wrappers below, for :mod:`kernels.triton_aot` (GPU compile checks):
    head dim 32 (PPMA's full-mode stages), fp32 inputs (fp32 dots) and bf16 inputs (bf16 tensor-core dots);
    the backward for image widths 84 (stage 3 of a 1344 x 800 detection input), 70, 14 and 7."""
    for dtype in ("fp32", "bf16"):
        ptrs = {name: dtype for name in ("q_ptr", "k_ptr", "v_ptr")}
        half = dtype != "fp32"
        for W in (None, 84, 70, 14, 7):  # None: the forward (its tiles do not depend on W)
            backward = W is not None
            bm, bn, bd, bdv, warps, stages = _blocks(32, 32, half, backward, W or 1)
            common = dict(ptr_dtypes=ptrs, scalar_types=dict(scale="fp32"), num_warps=warps, num_stages=stages,
                          max_spill=_SPILL_ALLOWANCE.get((bm, bn, warps, half), 0))
            blocks = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, BLOCK_DV=bdv, HALF_DOTS=half)
            if not backward:
                yield dict(name=f"polyline.fwd d32 {dtype}", kernel=_fwd_kernel, constexprs=blocks, **common)
            else:
                yield dict(name=f"polyline.bwd d32 W{W} {dtype}", kernel=_bwd_kernel,
                           constexprs=dict(blocks, ROWS_Q=_rows(bm, W), ROWS_K=_rows(bn, W)), **common)
        for W in (84, 70):  # the row layout: segments of 32 and 16 columns
            bm, bn, bd, bdv, warps, stages = _row_blocks(32, 32, W)
            common = dict(ptr_dtypes=ptrs, scalar_types=dict(scale="fp32"), num_warps=warps, num_stages=stages,
                          max_spill=_SPILL_ALLOWANCE.get(("rows", bm, half), 0),
                          constexprs=dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, BLOCK_DV=bdv, HALF_DOTS=half))
            yield dict(name=f"polyline.rows.fwd d32 W{W} {dtype}", kernel=rows_forward_kernel, **common)
            yield dict(name=f"polyline.rows.bwd d32 W{W} {dtype}", kernel=rows_backward_kernel, **common)


LAYOUTS = ("flat", "rows")
_layout = {"default": "flat"}  # the flat tiles are the measured default; see use_layout()


@contextlib.contextmanager
def use_layout(layout: str):
    """Runs the Triton kernels with another tile layout inside the block (the GPU suite times both):
    ``"flat"`` (:func:`_fwd_kernel`, :func:`_bwd_kernel`) or ``"rows"`` (:mod:`.triton_rows`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    before, _layout["default"] = _layout["default"], layout
    try:
        yield
    finally:
        _layout["default"] = before


def _row_blocks(d: int, dv: int, W: int):
    """(BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, num_warps, num_stages) of the row layout: segments of 16 or 32
    columns (the smaller one when it pads a row less), 4 warps; not yet measured on a GPU."""
    bd = max(16, triton.next_power_of_2(d))
    bdv = max(16, triton.next_power_of_2(dv))
    seg = 16 if triton.cdiv(W, 16) * 16 < triton.cdiv(W, 32) * 32 or max(bd, bdv) > 32 else 32
    return seg, seg, bd, bdv, 4, 3


def _launch(d: int, dv: int, half: bool, backward: bool, W: int, config: dict | None):
    """(layout, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, launch kwargs): the layout's defaults, overridden by a
    tuning ``config`` (keys layout, BLOCK_M, BLOCK_N, num_warps, num_stages; the GPU suite's sweep)."""
    config = config or {}
    unknown = set(config) - {"layout", "BLOCK_M", "BLOCK_N", "num_warps", "num_stages"}
    if unknown:
        raise ValueError(f"unknown launch config keys {sorted(unknown)}")
    layout = config.get("layout") or _layout["default"]
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    pick = _row_blocks(d, dv, W) if layout == "rows" else _blocks(d, dv, half, backward, W)
    bm, bn, bd, bdv, warps, stages = pick
    launch = dict(num_warps=config.get("num_warps") or warps, num_stages=config.get("num_stages") or stages)
    return layout, config.get("BLOCK_M") or bm, config.get("BLOCK_N") or bn, bd, bdv, launch


def _half_dots(q, k, v) -> bool:
    """Whether the kernels run their dots in the inputs' half dtype (see the module docstring)."""
    dt = q.dtype
    if dt not in (torch.float16, torch.bfloat16) or k.dtype != dt or v.dtype != dt:
        return False
    return dt == torch.float16 or q.is_cuda


def _prefix(log_a, log_b):
    ca = torch.cumsum(log_a.float(), -1).contiguous()
    cb = torch.cumsum(log_b.float(), -2).contiguous()
    return ca, cb


def triton_full_forward(q, k, v, log_a, log_b, scale: float = 1.0, config: dict | None = None):
    b, n, h, w, d = q.shape
    dv = v.shape[-1]
    N = h * w
    ca, cb = _prefix(log_a, log_b)
    qf, kf, vf = (t.reshape(b * n, N, t.shape[-1]).contiguous() for t in (q, k, v))
    o1 = torch.empty(b, n, N, dv, device=q.device, dtype=torch.float32)
    o2 = torch.empty_like(o1)
    lse1 = torch.empty(b, n, N, device=q.device, dtype=torch.float32)
    lse2 = torch.empty_like(lse1)
    half = _half_dots(q, k, v)
    layout, bm, bn, bd, bdv, launch = _launch(d, dv, half, False, w, config)
    blocks = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, BLOCK_DV=bdv, HALF_DOTS=half, **launch)
    if layout == "rows":  # one program per query row segment
        seg_q, seg_k = triton.cdiv(w, bm), triton.cdiv(w, bn)
        rows_forward_kernel[(h * seg_q, b * n)](qf, kf, vf, ca, cb, o1, o2, lse1, lse2, h, w, d, dv, float(scale),
                                                seg_q, seg_k, **blocks)
    else:  # one program per query tile
        _fwd_kernel[(triton.cdiv(N, bm), b * n)](qf, kf, vf, ca, cb, o1, o2, lse1, lse2, N, w, d, dv,
                                                 float(scale), **blocks)
    out = (0.5 * o1 + 0.5 * o2).to(q.dtype).view(b, n, h, w, dv)
    return out, o1, o2, lse1, lse2


def alert_not_deterministic(what: str) -> None:
    """What PyTorch's own non-deterministic CUDA ops do under ``torch.use_deterministic_algorithms(True)``:
    raise (or warn with ``warn_only=True``) naming the op and the deterministic alternative."""
    if not torch.are_deterministic_algorithms_enabled():
        return
    msg = (f"{what} adds gradients with atomics, so its result is not bitwise reproducible on a GPU, and "
           "torch.use_deterministic_algorithms(True) is set; use impl='torch' for a deterministic backward")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(msg, stacklevel=3)
    else:
        raise RuntimeError(msg)


def triton_full_backward(grad_out, q, k, v, log_a, log_b, o1, o2, lse1, lse2, scale: float = 1.0,
                         config: dict | None = None):
    if q.is_cuda:  # (under the interpreter the atomics run in program order)
        alert_not_deterministic("polyline_attention(impl='triton') backward")
    b, n, h, w, d = q.shape
    dv = v.shape[-1]
    N = h * w
    ca, cb = _prefix(log_a, log_b)
    qf, kf, vf = (t.reshape(b * n, N, t.shape[-1]).contiguous() for t in (q, k, v))
    go = grad_out.reshape(b, n, N, dv).float().contiguous()
    d1 = (go * o1).sum(-1).contiguous()
    d2 = (go * o2).sum(-1).contiguous()
    dq = torch.zeros(b * n, N, d, device=q.device, dtype=torch.float32)
    dk = torch.empty(b * n, N, d, device=q.device, dtype=torch.float32)
    dvv = torch.empty(b * n, N, dv, device=q.device, dtype=torch.float32)
    dca = torch.zeros(b, n, h, w, device=q.device, dtype=torch.float32)
    dcb = torch.zeros_like(dca)
    half = _half_dots(q, k, v)
    layout, bm, bn, bd, bdv, launch = _launch(d, dv, half, True, w, config)
    blocks = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, BLOCK_DV=bdv, HALF_DOTS=half, **launch)
    args = (qf, kf, vf, ca, cb, go, lse1, lse2, d1, d2, dq, dk, dvv, dca, dcb)
    if layout == "rows":  # one program per key row segment
        seg_q, seg_k = triton.cdiv(w, bm), triton.cdiv(w, bn)
        rows_backward_kernel[(h * seg_k, b * n)](*args, h, w, d, dv, float(scale), seg_q, seg_k, **blocks)
    else:  # one program per key tile
        _bwd_kernel[(triton.cdiv(N, bn), b * n)](*args, N, w, d, dv, float(scale), ROWS_Q=_rows(bm, w),
                                                 ROWS_K=_rows(bn, w), **blocks)
    dla = _rev_cumsum(dca, -1)
    dlb = _rev_cumsum(dcb, -2)
    return (dq.view(q.shape).to(q.dtype), dk.view(k.shape).to(k.dtype), dvv.view(v.shape).to(v.dtype),
            dla.to(log_a.dtype), dlb.to(log_b.dtype))
