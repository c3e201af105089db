"""Reference of RMT's Manhattan-decay attention: the official ``VisionRetentionAll`` / ``VisionRetentionChunk``
computation with its explicit masks (``RetNetRelPos2d``), readable and slow.

With the per-head log decay ``g_h = log gamma_h < 0``:

* ``"full"``: ``softmax(scale q k^T + M) v`` over all N = H W tokens, ``M = g_h (|iq - ik| + |jq - jk|)``;
* ``"axial"`` (the official chunkwise mode): attention along every grid row with the 1-D mask
  ``g_h |jq - jk|``, then along every grid column with ``g_h |iq - ik|``, the row output as the values.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MODES", "explicit_attention", "manhattan_attention_reference", "manhattan_masks"]

MODES = ("full", "axial")


def _distance_1d(length: int, like: Tensor) -> Tensor:
    index = torch.arange(length, device=like.device).to(like.dtype)
    return (index[:, None] - index[None, :]).abs()


def manhattan_masks(decay: Tensor, h: int, w: int, mode: str) -> tuple[Tensor, ...]:
    """The masks of one grid (official ``generate_2d_decay`` / ``generate_1d_decay``): ``(mask (1, n, N, N),)``
    for ``"full"``, ``(mask_h (n, H, H), mask_w (n, W, W))`` for ``"axial"``."""
    if mode == "full":
        dist = _distance_1d(h, decay)[:, None, :, None] + _distance_1d(w, decay)[None, :, None, :]
        return ((dist.reshape(h * w, h * w) * decay[:, None, None])[None],)
    return _distance_1d(h, decay) * decay[:, None, None], _distance_1d(w, decay) * decay[:, None, None]


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float = 1.0) -> Tensor:
    """``softmax(scale q k^T + bias) v`` in the three ops of the official code."""
    s = q @ k.transpose(-1, -2)
    if scale != 1.0:
        s = s * scale
    return torch.softmax(s + bias, dim=-1) @ v


def manhattan_attention_reference(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, mode: str, scale: float = 1.0,
                                  masks: tuple[Tensor, ...] | None = None, attend=explicit_attention) -> Tensor:
    """q, k (B, n, H, W, d), v (B, n, H, W, dv), decay (n,) -> (B, n, H, W, dv). ``masks``: this grid's
    :func:`manhattan_masks`, when the caller has them already; ``attend(q, k, v, bias, scale)``: the biased
    attention the layouts below run (the PyTorch path passes its SDPA dispatch)."""
    b, n, h, w, _ = q.shape
    masks = manhattan_masks(decay, h, w, mode) if masks is None else masks
    if mode == "full":
        o = attend(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3), masks[0], scale)
        return o.view(b, n, h, w, -1)
    mask_h, mask_w = masks
    # rows: (B, H, n, W, d) with mask (n, W, W); then columns: (B, W, n, H, d) with mask (n, H, H)
    o = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask_w, scale)
    o = attend(q.permute(0, 3, 1, 2, 4), k.permute(0, 3, 1, 2, 4), o.permute(0, 3, 2, 1, 4), mask_h, scale)
    return o.permute(0, 2, 3, 1, 4)
