"""Per-tile pieces shared by both Triton layouts of the polyline attention (:mod:`.triton_impl`'s flat token
tiles and :mod:`.triton_rows`' image-row segments): the layouts differ only in which tokens a tile holds and
how the mask terms are fetched; the scores, the two online softmaxes and the backward of one tile pair are
these functions (inlined by Triton, so sharing them costs nothing at run time).

Dot precision: ``HALF_DOTS`` (fp16 / bf16 inputs) runs tensor-core dots on operands in the inputs' dtype with
fp32 accumulation, probabilities and score gradients cast to that dtype first (as flash attention); otherwise
fp32 operands at IEEE precision (no TF32)."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_tile(ptr, offs, mask, offs_d, D):
    """Rows ``offs`` (masked by ``mask``) of a (tokens, D) matrix, columns padded to offs_d's length."""
    return tl.load(ptr + offs[:, None] * D + offs_d[None, :], mask=mask[:, None] & (offs_d[None, :] < D), other=0.0)


@triton.jit
def dot(a, b, HALF_DOTS: tl.constexpr):
    if HALF_DOTS:
        return tl.dot(a, b)
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def softmax_pair_step(s, mask1, mask2, mk, v, m_1, m_2, l_1, l_2, acc1, acc2, HALF_DOTS: tl.constexpr):
    """One key tile of the two online softmaxes (with M and with M^T) and their products with v."""
    s1 = tl.where(mk[None, :], s + mask1, float("-inf"))
    s2 = tl.where(mk[None, :], s + mask2, float("-inf"))
    n1 = tl.maximum(m_1, tl.max(s1, 1))
    n2 = tl.maximum(m_2, tl.max(s2, 1))
    p1 = tl.exp(s1 - n1[:, None])
    p2 = tl.exp(s2 - n2[:, None])
    c1 = tl.exp(m_1 - n1)
    c2 = tl.exp(m_2 - n2)
    l_1 = l_1 * c1 + tl.sum(p1, 1)
    l_2 = l_2 * c2 + tl.sum(p2, 1)
    acc1 = acc1 * c1[:, None] + dot(p1.to(v.dtype), v, HALF_DOTS)
    acc2 = acc2 * c2[:, None] + dot(p2.to(v.dtype), v, HALF_DOTS)
    return n1, n2, l_1, l_2, acc1, acc2


@triton.jit
def store_forward(o1_ptr, o2_ptr, lse1_ptr, lse2_ptr, offs_m, mq, offs_dv, DV, acc1, acc2, m_1, m_2, l_1, l_2):
    """The two normalised outputs and their log-sum-exps (the backward's softmax statistics)."""
    omask = mq[:, None] & (offs_dv[None, :] < DV)
    tl.store(o1_ptr + offs_m[:, None] * DV + offs_dv[None, :], acc1 / l_1[:, None], mask=omask)
    tl.store(o2_ptr + offs_m[:, None] * DV + offs_dv[None, :], acc2 / l_2[:, None], mask=omask)
    tl.store(lse1_ptr + offs_m, m_1 + tl.log(l_1), mask=mq)
    tl.store(lse2_ptr + offs_m, m_2 + tl.log(l_2), mask=mq)


@triton.jit
def load_query_side(q_ptr, do_ptr, ca_ptr, cb_ptr, lse1_ptr, lse2_ptr, d1_ptr, d2_ptr, offs_m, mq, offs_d, offs_dv,
                    D, DV, v, HALF_DOTS: tl.constexpr):
    """What the backward reads per query tile: q, the output gradient, the prefix sums, the softmax statistics
    and the rowwise <dO, O> terms."""
    q = load_tile(q_ptr, offs_m, mq, offs_d, D)
    do = load_tile(do_ptr, offs_m, mq, offs_dv, DV)
    if HALF_DOTS:
        do = do.to(v.dtype)
    else:
        q = q.to(tl.float32)
    caq = tl.load(ca_ptr + offs_m, mask=mq, other=0.0)
    cbq = tl.load(cb_ptr + offs_m, mask=mq, other=0.0)
    lse1 = tl.load(lse1_ptr + offs_m, mask=mq, other=0.0)
    lse2 = tl.load(lse2_ptr + offs_m, mask=mq, other=0.0)
    d1 = tl.load(d1_ptr + offs_m, mask=mq, other=0.0)
    d2 = tl.load(d2_ptr + offs_m, mask=mq, other=0.0)
    return q, do, caq, cbq, lse1, lse2, d1, d2


@triton.jit
def backward_pair(q, k, v, do, s, mask1, mask2, m2d, lse1, lse2, d1, d2, scale, HALF_DOTS: tl.constexpr):
    """Gradients of one (query tile, key tile) pair: the tile's contributions to dv and dk, its dq, and the
    score gradients g1, g2 of the two softmaxes (which are also the gradients of M and M^T)."""
    p1 = tl.where(m2d, tl.exp(s + mask1 - lse1[:, None]), 0.0)
    p2 = tl.where(m2d, tl.exp(s + mask2 - lse2[:, None]), 0.0)
    dp = dot(do, tl.trans(v), HALF_DOTS)
    dv = dot(tl.trans((p1 + p2).to(v.dtype)), do, HALF_DOTS) * 0.5
    g1 = p1 * (dp - d1[:, None]) * 0.5
    g2 = p2 * (dp - d2[:, None]) * 0.5
    ds = g1 + g2
    dk = dot(tl.trans(ds.to(q.dtype)), q, HALF_DOTS) * scale
    dq = dot(ds.to(k.dtype), k, HALF_DOTS) * scale
    return dv, dk, dq, g1, g2
