"""Triton kernels of full-mode polyline attention with tiles aligned to image rows (the ``"rows"`` layout).

The flat kernels of :mod:`.triton_impl` tile the token axis freely, so each (query tile, key tile) pair
gathers four (BLOCK_M, BLOCK_N) tables of prefix sums from scattered addresses. Here a tile is a segment of
one image row: queries (row ``i``, columns ``jq``), keys (row ``ik``, columns ``jk``). Then the four terms
the mask needs per pair, ``ca[i, jk], cb[i, jk]`` (one row, the key columns) and ``ca[ik, jq], cb[ik, jq]`` (one
row, the query columns), are contiguous 1-D loads, and the row sign ``sign(i - ik)`` is one number per pair:

    M   = (ca[i, jq] - ca[i, jk]) * sign(jq - jk) + sign(i - ik) * (cb[i, jk] - cb[ik, jk])
    M^T = (ca[ik, jq] - ca[ik, jk]) * sign(jq - jk) + sign(i - ik) * (cb[i, jq] - cb[ik, jq])

The cost is padding: a row of W tokens fills ceil(W / BLOCK) segments. Same layout of inputs and outputs as
the flat kernels (q, k (BN, N, d); v (BN, N, dv); prefix sums ca, cb (BN, H, W) fp32), same dot precision rules
(``HALF_DOTS``), same outputs, so the wrappers in :mod:`.triton_impl` run either. The backward adds dq and the
prefix-sum gradients with atomics, as the flat one; per pair it needs 5 vectors of atomics instead of row-
grouped tables.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_tiles import backward_pair, dot, load_query_side, load_tile, softmax_pair_step, store_forward

__all__ = ["rows_backward_kernel", "rows_forward_kernel"]


@triton.jit
def _row_masks(ca_ptr, cb_ptr, W, i, ik, jq, jk, mq, mk, caq, cbq, cak, cbk):
    """M and M^T of one pair of row segments, the column signs and the row sign."""
    ca_qk = tl.load(ca_ptr + i * W + jk, mask=mk, other=0.0)  # ca[i, jk]
    cb_qk = tl.load(cb_ptr + i * W + jk, mask=mk, other=0.0)  # cb[i, jk]
    ca_kq = tl.load(ca_ptr + ik * W + jq, mask=mq, other=0.0)  # ca[ik, jq]
    cb_kq = tl.load(cb_ptr + ik * W + jq, mask=mq, other=0.0)  # cb[ik, jq]
    sgn_j = (jq[:, None] > jk[None, :]).to(tl.float32) - (jq[:, None] < jk[None, :]).to(tl.float32)
    si = (i > ik).to(tl.float32) - (i < ik).to(tl.float32)
    m1 = (caq[:, None] - ca_qk[None, :]) * sgn_j + (si * (cb_qk - cbk))[None, :]
    m2 = (ca_kq[:, None] - cak[None, :]) * sgn_j + (si * (cbq - cb_kq))[:, None]
    return m1, m2, sgn_j, si


@triton.jit
def rows_forward_kernel(q_ptr, k_ptr, v_ptr, ca_ptr, cb_ptr, o1_ptr, o2_ptr, lse1_ptr, lse2_ptr,
                        H, W, D, DV, scale, SEG_Q, SEG_K,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_DV: tl.constexpr, HALF_DOTS: tl.constexpr):
    """One program per query row segment (grid: H * SEG_Q, batch * heads); loops over every key segment."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    N = H * W
    q_ptr += bh * N * D
    k_ptr += bh * N * D
    v_ptr += bh * N * DV
    ca_ptr += bh * N
    cb_ptr += bh * N
    i = pid // SEG_Q
    jq = (pid % SEG_Q) * BLOCK_M + tl.arange(0, BLOCK_M)
    mq = jq < W
    offs_m = i * W + jq
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
    for t in range(0, H * SEG_K):
        ik = t // SEG_K
        jk = (t % SEG_K) * BLOCK_N + tl.arange(0, BLOCK_N)
        mk = jk < W  # every segment starts inside its row: at least one valid key per tile
        offs_n = ik * W + jk
        k = load_tile(k_ptr, offs_n, mk, offs_d, D)
        v = load_tile(v_ptr, offs_n, mk, offs_dv, DV)
        if not HALF_DOTS:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        cak = tl.load(ca_ptr + offs_n, mask=mk, other=0.0)
        cbk = tl.load(cb_ptr + offs_n, mask=mk, other=0.0)
        s = dot(q, tl.trans(k), HALF_DOTS) * scale
        mask1, mask2, sgn_j, si = _row_masks(ca_ptr, cb_ptr, W, i, ik, jq, jk, mq, mk, caq, cbq, cak, cbk)
        m_1, m_2, l_1, l_2, acc1, acc2 = softmax_pair_step(s, mask1, mask2, mk, v, m_1, m_2, l_1, l_2, acc1, acc2,
                                                           HALF_DOTS)
    store_forward(o1_ptr + bh * N * DV, o2_ptr + bh * N * DV, lse1_ptr + bh * N, lse2_ptr + bh * N, offs_m, mq,
                  offs_dv, DV, acc1, acc2, m_1, m_2, l_1, l_2)


@triton.jit
def _mask_grad_atomics(dca_ptr, dcb_ptr, W, i, ik, jq, jk, mq, mk, offs_m, g1, g2, sgn_j, si):
    """Adds the pair's gradients of the prefix sums indexed by the query or by a (row, column) mix; returns
    the key-indexed ones (d ca[ik, jk], d cb[ik, jk]), which the program accumulates itself."""
    g1j = g1 * sgn_j
    g2j = g2 * sgn_j
    c1 = tl.sum(g1, 0)
    r2 = tl.sum(g2, 1)
    tl.atomic_add(dca_ptr + offs_m, tl.sum(g1j, 1), mask=mq)  # ca[i, jq] in M
    tl.atomic_add(dca_ptr + i * W + jk, -tl.sum(g1j, 0), mask=mk)  # ca[i, jk] in M
    tl.atomic_add(dcb_ptr + i * W + jk, si * c1, mask=mk)  # cb[i, jk] in M
    tl.atomic_add(dca_ptr + ik * W + jq, tl.sum(g2j, 1), mask=mq)  # ca[ik, jq] in M^T
    tl.atomic_add(dcb_ptr + offs_m, si * r2, mask=mq)  # cb[i, jq] in M^T
    tl.atomic_add(dcb_ptr + ik * W + jq, -si * r2, mask=mq)  # cb[ik, jq] in M^T
    return -tl.sum(g2j, 0), -si * c1  # ca[ik, jk] in M^T, cb[ik, jk] in M


@triton.jit
def rows_backward_kernel(q_ptr, k_ptr, v_ptr, ca_ptr, cb_ptr, do_ptr, lse1_ptr, lse2_ptr, d1_ptr, d2_ptr,
                         dq_ptr, dk_ptr, dv_ptr, dca_ptr, dcb_ptr,
                         H, W, D, DV, scale, SEG_Q, SEG_K,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                         BLOCK_DV: tl.constexpr, HALF_DOTS: tl.constexpr):
    """One program per key row segment (grid: H * SEG_K, batch * heads); loops over every query segment,
    keeps dk, dv and the key-indexed prefix-sum gradients, adds the rest with atomics."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    N = H * W
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
    ik = pid // SEG_K
    jk = (pid % SEG_K) * BLOCK_N + tl.arange(0, BLOCK_N)
    mk = jk < W
    offs_n = ik * W + jk
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
    for t in range(0, H * SEG_Q):
        i = t // SEG_Q
        jq = (t % SEG_Q) * BLOCK_M + tl.arange(0, BLOCK_M)
        mq = jq < W
        offs_m = i * W + jq
        q, do, caq, cbq, lse1, lse2, d1, d2 = load_query_side(q_ptr, do_ptr, ca_ptr, cb_ptr, lse1_ptr, lse2_ptr,
                                                              d1_ptr, d2_ptr, offs_m, mq, offs_d, offs_dv, D, DV, v,
                                                              HALF_DOTS)
        s = dot(q, tl.trans(k), HALF_DOTS) * scale
        mask1, mask2, sgn_j, si = _row_masks(ca_ptr, cb_ptr, W, i, ik, jq, jk, mq, mk, caq, cbq, cak, cbk)
        dv_t, dk_t, dq, g1, g2 = backward_pair(q, k, v, do, s, mask1, mask2, mq[:, None] & mk[None, :], lse1, lse2,
                                               d1, d2, scale, HALF_DOTS)
        dv += dv_t
        dk += dk_t
        tl.atomic_add(dq_ptr + offs_m[:, None] * D + offs_d[None, :], dq, mask=mq[:, None] & (offs_d[None, :] < D))
        dak, dbk = _mask_grad_atomics(dca_ptr, dcb_ptr, W, i, ik, jq, jk, mq, mk, offs_m, g1, g2, sgn_j, si)
        dcak += dak
        dcbk += dbk
    tl.store(dk_ptr + offs_n[:, None] * D + offs_d[None, :], dk, mask=kmask)
    tl.store(dv_ptr + offs_n[:, None] * DV + offs_dv[None, :], dv, mask=vmask)
    tl.atomic_add(dca_ptr + offs_n, dcak, mask=mk)
    tl.atomic_add(dcb_ptr + offs_n, dcbk, mask=mk)
