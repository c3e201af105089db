"""Criss-cross (decomposed, axial) polyline attention with a hand-written backward (pure PyTorch).

The official criss-cross mode already costs O(N^1.5 d) and its largest tensors are the 1-D masks and the two
axial softmax matrices, (B, n, H, W, W) and (B, n, W, H, H). Autograd through the official code keeps about
ten such tensors per layer alive for backward (masks, logits, softmaxes, intermediate products); this path
keeps only the inputs and recomputes the two softmax matrices in backward, which is where it pays off.

Forward (both axial orders averaged)::

    A_w = softmax(S_row + Lw), A_h = softmax(S_col + Lh)
    out = 1/2 A_h (A_w v) + 1/2 A_w (A_h v)
"""
from __future__ import annotations

import torch

from ..dtypes import compute_dtype
from .tiled import _rev_cumsum

__all__ = ["cc_backward", "cc_forward"]


def _sgn(size, device, dtype):
    r = torch.arange(size, device=device)
    return torch.sign(r[:, None] - r[None, :]).to(dtype)


def _probs(q, k, v, log_a, log_b, scale):
    ct = compute_dtype(q)
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    h, w = q.shape[2], q.shape[3]
    ca = torch.cumsum(log_a.to(ct), -1)  # (B, n, H, W)
    cb = torch.cumsum(log_b.to(ct), -2).transpose(-1, -2)  # (B, n, W, H)
    sw, sh = _sgn(w, q.device, ct), _sgn(h, q.device, ct)
    lw = (ca[..., :, None] - ca[..., None, :]) * sw
    lh = (cb[..., :, None] - cb[..., None, :]) * sh
    qh, kh, vh = q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3)
    s_w = q @ k.transpose(-1, -2)
    s_h = qh @ kh.transpose(-1, -2)
    if scale != 1.0:
        s_w, s_h = s_w * scale, s_h * scale
    a_w = torch.softmax(s_w.add_(lw), -1)
    a_h = torch.softmax(s_h.add_(lh), -1)
    return q, k, v, qh, kh, vh, a_w, a_h, sw, sh


def cc_forward(q, k, v, log_a, log_b, scale: float = 1.0) -> torch.Tensor:
    _, _, v_, _, _, vh, a_w, a_h, _, _ = _probs(q, k, v, log_a, log_b, scale)
    path1 = (a_h @ (a_w @ v_).transpose(2, 3)).transpose(2, 3)
    path2 = a_w @ (a_h @ vh).transpose(2, 3)
    return (0.5 * path1 + 0.5 * path2).to(q.dtype).contiguous()


def _softmax_bwd(a, da):
    return a * (da - (da * a).sum(-1, keepdim=True))


def cc_backward(grad_out, q, k, v, log_a, log_b, scale: float = 1.0):
    qc, kc, vc, qh, kh, vh, a_w, a_h, sw, sh = _probs(q, k, v, log_a, log_b, scale)
    g = 0.5 * grad_out.to(qc.dtype)  # (B, n, H, W, dv)
    gh = g.transpose(2, 3)
    # path 1: Y1 = A_w v (rows), O1 = A_h Y1 (columns)
    y1h = (a_w @ vc).transpose(2, 3)
    da_h = gh @ y1h.transpose(-1, -2)
    dy1 = (a_h.transpose(-1, -2) @ gh).transpose(2, 3)
    da_w = dy1 @ vc.transpose(-1, -2)
    dv = a_w.transpose(-1, -2) @ dy1
    # path 2: Y2 = A_h v (columns), O2 = A_w Y2 (rows)
    y2w = (a_h @ vh).transpose(2, 3)
    da_w = da_w + g @ y2w.transpose(-1, -2)
    dy2h = (a_w.transpose(-1, -2) @ g).transpose(2, 3)
    da_h = da_h + dy2h @ vh.transpose(-1, -2)
    dv = dv + (a_h.transpose(-1, -2) @ dy2h).transpose(2, 3)
    ds_w = _softmax_bwd(a_w, da_w)  # (B, n, H, W, W) = d/d Lw
    ds_h = _softmax_bwd(a_h, da_h)  # (B, n, W, H, H) = d/d Lh
    dq = ds_w @ kc + (ds_h @ kh).transpose(2, 3)
    dk = ds_w.transpose(-1, -2) @ qc + (ds_h.transpose(-1, -2) @ qh).transpose(2, 3)
    if scale != 1.0:
        dq, dk = dq * scale, dk * scale
    dca = ((ds_w + ds_w.transpose(-1, -2)) * sw).sum(-1)  # (B, n, H, W)
    dcb = ((ds_h + ds_h.transpose(-1, -2)) * sh).sum(-1).transpose(-1, -2)  # (B, n, H, W)
    return tuple(t.to(ref.dtype).contiguous() for t, ref in
                 ((dq, q), (dk, k), (dv, v), (_rev_cumsum(dca, -1), log_a), (_rev_cumsum(dcb, -2), log_b)))
