"""Memory-efficient, exact full-mode polyline attention in pure PyTorch (the CPU default).

Flash-attention style: the queries and keys are tiled in blocks of whole grid rows; the two log-mask tiles
(for M and M^T) are rebuilt on the fly from the per-row / per-column prefix sums
``ca = cumsum(log_a, W)`` and ``cb = cumsum(log_b, H)``; two online-softmax accumulators share every score
tile. Nothing of size N x N is ever allocated: the working set is a few (B, n, Tq, Tk) tiles.

For a query block of rows ``R_q`` and a key block of rows ``R_k`` (all columns), with
``L(c)[x, y] = (c[x] - c[y]) * sign(x - y)`` (= ``c[max] - c[min]``, bitwise equal to the official
``generate_structed_mask_1d``)::

    M  [(iq, jq), (ik, jk)] = Lw[iq][jq, jk] + Lh_qk[iq, ik, jk]
    M^T[(iq, jq), (ik, jk)] = Lw[ik][jk, jq] + Lh_qk[iq, ik, jq]
    Lw[i][x, y] = (ca[i, x] - ca[i, y]) * sign(x - y),   Lh_qk[iq, ik, j] = (cb[iq, j] - cb[ik, j]) * sign(iq - ik)

so a tile is a broadcast sum of a (Rq, W, W) or (Rk, W, W) row term and a (Rq, Rk, W) column term. The
tiles live in a few scratch buffers allocated once per call (fresh tiles would cost page faults on CPU).

Backward recomputes the tiles from the saved log-sum-exps (lse1, lse2) and the two partial outputs
(o1 = softmax(S + M) v, o2 = softmax(S + M^T) v): ``dS_t = P_t * (dO v^T - rowsum(dO * o_t)) / 2``; the mask
gradients are reduced per tile onto the small row/column terms and then onto ``ca``/``cb``, and finally onto
``log_a``/``log_b`` by a reversed cumulative sum. The signs come from positions (as the official autograd
through ``tril``/``triu``), so gradients equal the official ones also where prefix sums tie.
"""
from __future__ import annotations

import math

import torch

from ..dtypes import compute_dtype

__all__ = ["default_blocks", "full_backward", "full_forward"]


def default_blocks(h: int, w: int, block_q: int | None = None, block_k: int | None = None):
    """Rows per query block and per key block (tiles of about 512 x 1024 tokens by default)."""
    bq = block_q if block_q is not None else 512
    bk = block_k if block_k is not None else 1024
    return max(1, min(h, bq // max(w, 1))), max(1, min(h, bk // max(w, 1)))


def _row_term(c: torch.Tensor, sgn: torch.Tensor) -> torch.Tensor:
    """(B, n, R, W) prefix sums -> (B, n, R, W, W) 1-D masks ``(c[x] - c[y]) * sign(x - y)``."""
    return (c[..., :, None] - c[..., None, :]) * sgn


def _col_term(cq: torch.Tensor, ck: torch.Tensor, sgn: torch.Tensor) -> torch.Tensor:
    """(B, n, Rq, W), (B, n, Rk, W) -> (B, n, Rq, Rk, W): ``(cb[iq, j] - cb[ik, j]) * sign(iq - ik)``."""
    return (cq[:, :, :, None, :] - ck[:, :, None, :, :]) * sgn[:, :, None]


class _TileBuffers:
    """Scratch tensors reused by every (query block, key block) pair of one call: on CPU a fresh tile of tens
    of MB costs page faults comparable to the arithmetic on it, so each named buffer is allocated once (at the
    size of its first, i.e. largest, request; grown if ever needed) and handed out as contiguous views."""

    def __init__(self, dtype, device):
        self.dtype, self.device, self.bufs = dtype, device, {}

    def __call__(self, name: str, *shape: int) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.bufs[name] = torch.empty(numel, dtype=self.dtype, device=self.device)
        return buf[:numel].view(shape)


def _masked_logits(qb, kb, lw_q, lw_k, lh, buf: _TileBuffers):
    """Both masked logit tiles ``s + M`` and ``s + M^T`` (s = qb kb^T) as (B, n, Rq, W, Rk, W) views of the
    scratch buffers "t1" and "t2"."""
    b, n, rq, w = lw_q.shape[:4]
    rk = lw_k.shape[2]
    t2 = torch.matmul(qb, kb.transpose(-1, -2), out=buf("t2", b, n, rq * w, rk * w)).view(b, n, rq, w, rk, w)
    # (broadcasting the row term over ik out-of-place is slow in TensorIterator; add it in place instead)
    t1 = torch.add(t2, lh[:, :, :, None, :, :], out=buf("t1", b, n, rq, w, rk, w)).add_(lw_q[:, :, :, :, None, :])
    # Lw is symmetric, so Lw[ik][jk, jq] = Lw[ik][jq, jk]: index it with jk innermost (contiguous broadcast)
    t2.add_(lw_k.permute(0, 1, 3, 2, 4)[:, :, None]).add_(lh.permute(0, 1, 2, 4, 3)[..., None])
    return t1, t2


def _prep(q, k, v, log_a, log_b):
    ct = compute_dtype(q)
    b, n, h, w, d = q.shape
    qf = q.reshape(b, n, h * w, d).to(ct)
    kf = k.reshape(b, n, h * w, d).to(ct)
    vf = v.reshape(b, n, h * w, v.shape[-1]).to(ct)
    ca = torch.cumsum(log_a.to(ct), dim=-1)
    cb = torch.cumsum(log_b.to(ct), dim=-2)
    return qf, kf, vf, ca, cb


def full_forward(q, k, v, log_a, log_b, scale: float = 1.0, block_q=None, block_k=None):
    """Returns ``out, o1, o2, lse1, lse2`` (out in q's dtype; the rest in the compute dtype)."""
    b, n, h, w, d = q.shape
    dv = v.shape[-1]
    qf, kf, vf, ca, cb = _prep(q, k, v, log_a, log_b)
    ct = qf.dtype
    rq, rk = default_blocks(h, w, block_q, block_k)
    sgn_w = torch.sign(torch.arange(w, device=q.device)[:, None] - torch.arange(w, device=q.device)[None, :]).to(ct)
    rows = torch.arange(h, device=q.device)
    lw_all = _row_term(ca, sgn_w)  # (B, n, H, W, W): O(N * W), the row masks of the criss-cross mode
    o1 = torch.empty(b, n, h * w, dv, dtype=ct, device=q.device)
    o2 = torch.empty_like(o1)
    lse1 = torch.empty(b, n, h * w, dtype=ct, device=q.device)
    lse2 = torch.empty_like(lse1)
    buf = _TileBuffers(ct, q.device)
    for q0 in range(0, h, rq):
        q1 = min(h, q0 + rq)
        tq = (q1 - q0) * w
        qb = qf[:, :, q0 * w:q1 * w]
        if scale != 1.0:
            qb = qb * scale
        lw_q, cb_q = lw_all[:, :, q0:q1], cb[:, :, q0:q1]
        m_1 = torch.full((b, n, tq, 1), -math.inf, dtype=ct, device=q.device)
        m_2 = m_1.clone()
        l_1 = torch.zeros(b, n, tq, 1, dtype=ct, device=q.device)
        l_2 = l_1.clone()
        acc1 = torch.zeros(b, n, tq, dv, dtype=ct, device=q.device)
        acc2 = torch.zeros_like(acc1)
        for k0 in range(0, h, rk):
            k1 = min(h, k0 + rk)
            tk = (k1 - k0) * w
            kb, vb = kf[:, :, k0 * w:k1 * w], vf[:, :, k0 * w:k1 * w]
            sgn_h = torch.sign(rows[q0:q1, None] - rows[None, k0:k1]).to(ct)
            lh = _col_term(cb_q, cb[:, :, k0:k1], sgn_h)
            t1, t2 = _masked_logits(qb, kb, lw_q, lw_all[:, :, k0:k1], lh, buf)
            for t, m_, l_, acc in ((t1, m_1, l_1, acc1), (t2, m_2, l_2, acc2)):
                t = t.view(b, n, tq, tk)
                m_new = torch.maximum(m_, t.amax(dim=-1, keepdim=True))  # finite: every tile has finite logits
                p = t.sub_(m_new).exp_()
                corr = torch.exp(m_ - m_new)
                l_.mul_(corr).add_(p.sum(dim=-1, keepdim=True))
                acc.mul_(corr).add_(torch.matmul(p, vb))
                m_.copy_(m_new)
        o1[:, :, q0 * w:q1 * w] = acc1 / l_1
        o2[:, :, q0 * w:q1 * w] = acc2 / l_2
        lse1[:, :, q0 * w:q1 * w] = (m_1 + torch.log(l_1)).squeeze(-1)
        lse2[:, :, q0 * w:q1 * w] = (m_2 + torch.log(l_2)).squeeze(-1)
    out = (0.5 * o1 + 0.5 * o2).to(q.dtype).view(b, n, h, w, dv)
    return out, o1, o2, lse1, lse2


def _rev_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Reversed cumulative sum along ``dim`` (prefix-sum gradients -> log-decay gradients); also used by the
    criss-cross and Triton paths."""
    return torch.flip(torch.cumsum(torch.flip(x, (dim,)), dim), (dim,))


def full_backward(grad_out, q, k, v, log_a, log_b, o1, o2, lse1, lse2, scale: float = 1.0,
                  block_q=None, block_k=None):
    """Gradients (dq, dk, dv, dlog_a, dlog_b) of ``out = (o1 + o2) / 2``, recomputing the tiles."""
    b, n, h, w, d = q.shape
    dvd = v.shape[-1]
    qf, kf, vf, ca, cb = _prep(q, k, v, log_a, log_b)
    ct = qf.dtype
    go = grad_out.reshape(b, n, h * w, dvd).to(ct)
    rq, rk = default_blocks(h, w, block_q, block_k)
    sgn_w = torch.sign(torch.arange(w, device=q.device)[:, None] - torch.arange(w, device=q.device)[None, :]).to(ct)
    rows = torch.arange(h, device=q.device)
    lw_all = _row_term(ca, sgn_w)
    d1 = (go * o1).sum(-1, keepdim=True)
    d2 = (go * o2).sum(-1, keepdim=True)
    dq = torch.zeros_like(qf)
    dk = torch.zeros_like(kf)
    dvv = torch.zeros_like(vf)
    dlw = torch.zeros_like(lw_all)  # gradient w.r.t. the row masks (B, n, H, W, W)
    dcb = torch.zeros_like(cb)
    buf = _TileBuffers(ct, q.device)
    for q0 in range(0, h, rq):
        q1 = min(h, q0 + rq)
        tq = (q1 - q0) * w
        sl_q = slice(q0 * w, q1 * w)
        qb = qf[:, :, sl_q] * scale if scale != 1.0 else qf[:, :, sl_q]
        gob = go[:, :, sl_q]
        lw_q, cb_q = lw_all[:, :, q0:q1], cb[:, :, q0:q1]
        ls1, ls2 = lse1[:, :, sl_q, None], lse2[:, :, sl_q, None]
        d1b, d2b = d1[:, :, sl_q], d2[:, :, sl_q]
        dqb = torch.zeros(b, n, tq, d, dtype=ct, device=q.device)
        for k0 in range(0, h, rk):
            k1 = min(h, k0 + rk)
            tk = (k1 - k0) * w
            sl_k = slice(k0 * w, k1 * w)
            kb, vb = kf[:, :, sl_k], vf[:, :, sl_k]
            sgn_h = torch.sign(rows[q0:q1, None] - rows[None, k0:k1]).to(ct)
            lh = _col_term(cb_q, cb[:, :, k0:k1], sgn_h)
            t1, t2 = _masked_logits(qb, kb, lw_q, lw_all[:, :, k0:k1], lh, buf)
            p1 = t1.view(b, n, tq, tk).sub_(ls1).exp_()
            p2 = t2.view(b, n, tq, tk).sub_(ls2).exp_()
            dp = torch.matmul(gob, vb.transpose(-1, -2), out=buf("dp", b, n, tq, tk))
            dvv[:, :, sl_k] += torch.matmul(torch.add(p1, p2, out=buf("tmp", b, n, tq, tk)).transpose(-1, -2), gob)
            g1 = p1.mul_(torch.sub(dp, d1b, out=buf("tmp", b, n, tq, tk)))  # dS1 * 2
            g2 = p2.mul_(dp.sub_(d2b))  # dS2 * 2
            g1v = g1.view(b, n, q1 - q0, w, k1 - k0, w)
            g2v = g2.view(b, n, q1 - q0, w, k1 - k0, w)
            # mask gradients: M = Lw[iq][jq, jk] + Lh[iq, ik, jk]; M^T = Lw[ik][jk, jq] + Lh[iq, ik, jq]
            dlw[:, :, q0:q1] += torch.sum(g1v, dim=4, out=buf("dlw", b, n, q1 - q0, w, w))
            # stored as [ik][jq, jk]; symmetrised below
            dlw[:, :, k0:k1] += torch.sum(g2v, dim=2, out=buf("dlw", b, n, w, k1 - k0, w)).transpose(2, 3)
            dlh = g1v.sum(dim=3) + g2v.sum(dim=5).permute(0, 1, 2, 4, 3)  # (B, n, Rq, Rk, W)
            dlh = dlh * sgn_h[:, :, None]
            dcb[:, :, q0:q1] += dlh.sum(dim=3)
            dcb[:, :, k0:k1] -= dlh.sum(dim=2)
            gs = g1.add_(g2)
            dqb += torch.matmul(gs, kb)
            dk[:, :, sl_k] += torch.matmul(gs.transpose(-1, -2), qb)
        dq[:, :, sl_q] = dqb
    half = 0.5
    dq = dq * (half * scale)
    dk = dk * half
    dvv = dvv * half
    # row masks -> ca: d/dca[x] of entry (x, y) = (ca[x] - ca[y]) * sign(x - y) and of entry (y, x) are both sign(x - y)
    dlw = dlw * half
    dca = ((dlw + dlw.transpose(-1, -2)) * sgn_w).sum(-1)
    dcb = dcb * half
    dla = _rev_cumsum(dca, -1)
    dlb = _rev_cumsum(dcb, -2)
    return (dq.view(q.shape).to(q.dtype), dk.view(k.shape).to(k.dtype), dvv.view(v.shape).to(v.dtype),
            dla.to(log_a.dtype), dlb.to(log_b.dtype))
