"""Pure-PyTorch reference of polyline-path masked attention (PPMA), following the official code exactly.

Shapes (all functions here): ``q, k`` (B, n, H, W, d), ``v`` (B, n, H, W, dv), ``log_a, log_b`` (B, n, H, W).
Tokens are flattened row-major, token (i, j) -> p = i * W + j, N = H * W.

* ``log_a[b, h, i, j]`` is the log of the horizontal decay alpha stored at token (i, j); it labels the edge
  between columns j-1 and j of row i (``log_a[..., 0]`` is never used).
* ``log_b[b, h, i, j]`` is the log of the vertical decay beta; it labels the edge between rows i-1 and i of
  column j (``log_b[..., 0, :]`` is never used).

1-D masks (official ``generate_structed_mask_1d``): with c = cumsum(a), ``L[x, y] = c[max(x, y)] - c[min(x, y)]``
(the sum of a over the half-open interval (min, max]; 0 on the diagonal). For negative a this is -|c[x] - c[y]|.

2-D polyline mask (official "whole" mode): for query (i, j) and key (i', j')::

    M[(i, j), (i', j')] = Lw_i[j, j'] + Lh_{j'}[i, i']

i.e. the log of the product of decays along the L-shaped path "along the query's row, then along the key's
column". ``M^T`` is the other L-path.

Attention (``mode='full'``, official ``MambaAttentionAllDouble``)::

    S = scale * q k^T ;  out = 1/2 softmax(S + M) v + 1/2 softmax(S + M^T) v

(two separate softmaxes, averaged). ``mode='criss_cross'`` (official ``MambaAttentionChunkDouble``): row
attention ``A_w = softmax(S_row + Lw)``, column attention ``A_h = softmax(S_col + Lh)`` and
``out = 1/2 A_h (A_w v) + 1/2 A_w (A_h v)`` (both axial orders, averaged).

``mask_placement`` is an ablation switch for where the mask acts:

* ``'logits'`` (official code, default): the log-mask is added to the logits before the softmax. This equals
  multiplying ``exp(S)`` by the decay mask ``exp(M)`` and renormalising every row.
* ``'post_softmax'`` (the paper's notation ``softmax(S) * exp(M)``): the decay mask multiplies the softmax
  probabilities and the rows are **not** renormalised, so the attention weights of a row sum to less than 1.
"""
from __future__ import annotations

import torch

__all__ = [
    "polyline_attention_reference",
    "polyline_mask",
    "polyline_mask_bruteforce",
    "structured_mask_1d",
]

MASK_PLACEMENTS = ("logits", "post_softmax")
MODES = ("full", "criss_cross")


def structured_mask_1d(a: torch.Tensor) -> torch.Tensor:
    """(..., L) log-decays -> (..., L, L) symmetric log-mask ``c[max] - c[min]`` (official formula)."""
    size = a.shape[-1]
    c = torch.cumsum(a, dim=-1)
    lower = torch.tril(torch.ones(size, size, device=a.device, dtype=torch.bool))
    upper = torch.triu(torch.ones(size, size, device=a.device, dtype=torch.bool), diagonal=1)
    tril_part = (c[..., :, None] - c[..., None, :]).masked_fill(~lower, 0.0)
    triu_part = (c[..., None, :] - c[..., :, None]).masked_fill(~upper, 0.0)
    return tril_part + triu_part


def axial_masks(log_a: torch.Tensor, log_b: torch.Tensor):
    """Row masks ``Lw`` (B, n, H, W, W) and column masks ``Lh`` (B, n, W, H, H)."""
    lw = structured_mask_1d(log_a)
    lh = structured_mask_1d(log_b.transpose(-1, -2))
    return lw, lh


def polyline_mask(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """The dense (B, n, N, N) log-mask M of the official "whole" mode."""
    b, n, h, w = log_a.shape
    lw, lh = axial_masks(log_a, log_b)
    lh = lh.permute(0, 1, 3, 4, 2)  # (B, n, i, i', j')
    m = lw[:, :, :, :, None, :] + lh[:, :, :, None, :, :]  # (B, n, i, j, i', j')
    return m.reshape(b, n, h * w, h * w)


def polyline_mask_bruteforce(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """M built edge by edge with explicit Python loops (for tests on tiny grids only)."""
    b, n, h, w = log_a.shape
    out = torch.zeros(b, n, h * w, h * w, dtype=log_a.dtype, device=log_a.device)
    for i in range(h):
        for j in range(w):
            for i2 in range(h):
                for j2 in range(w):
                    total = torch.zeros(b, n, dtype=log_a.dtype, device=log_a.device)
                    # horizontal along row i from column j to j2: edges labelled by columns (min, max]
                    for c in range(min(j, j2) + 1, max(j, j2) + 1):
                        total = total + log_a[:, :, i, c]
                    # vertical along column j2 from row i to i2: edges labelled by rows (min, max]
                    for r in range(min(i, i2) + 1, max(i, i2) + 1):
                        total = total + log_b[:, :, r, j2]
                    out[:, :, i * w + j, i2 * w + j2] = total
    return out


def _check(q, k, v, log_a, log_b, mode, mask_placement):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mask_placement not in MASK_PLACEMENTS:
        raise ValueError(f"mask_placement must be one of {MASK_PLACEMENTS}, got {mask_placement!r}")
    if q.dim() != 5 or k.shape != q.shape or v.shape[:4] != q.shape[:4]:
        raise ValueError(f"q, k, v must be (B, n, H, W, d) with equal leading dims; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if log_a.shape != q.shape[:4] or log_b.shape != q.shape[:4]:
        raise ValueError(f"log_a, log_b must be (B, n, H, W) = {tuple(q.shape[:4])}; got {tuple(log_a.shape)}, "
                         f"{tuple(log_b.shape)}")


def _masked_probs(s: torch.Tensor, m: torch.Tensor, mask_placement: str) -> torch.Tensor:
    if mask_placement == "logits":
        return torch.softmax(s + m, dim=-1)
    return torch.softmax(s, dim=-1) * torch.exp(m)


def polyline_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    mode: str = "full",
    scale: float | None = None,
    mask_placement: str = "logits",
) -> torch.Tensor:
    """Dense reference (materialises the N x N mask in full mode, like the official code)."""
    _check(q, k, v, log_a, log_b, mode, mask_placement)
    b, n, h, w, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    if mode == "full":
        qf, kf, vf = q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)
        s = qf @ kf.transpose(-1, -2)
        if scale != 1.0:
            s = s * scale
        m = polyline_mask(log_a, log_b)
        p = 0.5 * _masked_probs(s, m, mask_placement) + 0.5 * _masked_probs(s, m.transpose(-1, -2), mask_placement)
        return (p @ vf).reshape(b, n, h, w, v.shape[-1])
    # criss-cross: row attention over (B, n, H, W, W), column attention over (B, n, W, H, H)
    lw, lh = axial_masks(log_a, log_b)
    s_w = q @ k.transpose(-1, -2)
    q_h, k_h, v_h = q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3)  # (B, n, W, H, d)
    s_h = q_h @ k_h.transpose(-1, -2)
    if scale != 1.0:
        s_w, s_h = s_w * scale, s_h * scale
    a_w = _masked_probs(s_w, lw, mask_placement)  # (B, n, H, W, W)
    a_h = _masked_probs(s_h, lh, mask_placement)  # (B, n, W, H, H)
    path1 = a_h @ (a_w @ v).transpose(2, 3)  # rows first, then columns; (B, n, W, H, dv)
    path2 = a_w @ (a_h @ v_h).transpose(2, 3)  # columns first, then rows; (B, n, H, W, dv)
    return 0.5 * path1.transpose(2, 3) + 0.5 * path2
