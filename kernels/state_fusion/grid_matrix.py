"""State fusion on small grids as one (HW x HW) matrix per channel: batched matmuls instead of dilated convs.

On a grid of H x W pixels the fusion is linear in the states of each channel, ``out[n, c] = M_c h[n, c]``
(flattened grids), with

    M_c[j, src_t(j)] += alpha_i * K_i[c, t]     for the 27 taps t of the three dilations i,

``src_t(j)`` being the replicate-clamped pixel that tap t of pixel j reads (exactly the per-pixel
reference). The backward is ``dh = M_c^T g`` and ``dM_c = g h^T`` gathered back onto the 27 taps. For the
small late-stage grids of Spatial-Mamba (7x7 at 224 px, everything at the small inputs of CPU runs) this is
several times faster on CPU than oneDNN's dilated depthwise convolutions and their backward; cost and memory
grow with (HW)^2, so the op uses it only up to :data:`MAX_PIXELS`. Like any matmul it follows
``torch.set_float32_matmul_precision`` (bf16 on CPUs with AMX at "medium", TF32 on CUDA at "high"), as the
model's linear layers do; the default "highest" keeps it fp32.
"""
from __future__ import annotations

import functools

import torch

from .naive import DILATIONS

__all__ = ["MAX_PIXELS", "state_fusion_matrix", "state_fusion_matrix_bwd"]

MAX_PIXELS = 64


@functools.lru_cache(maxsize=64)
def _sources(H: int, W: int, device: torch.device) -> torch.Tensor:
    """(HW, 27) flat index of the pixel each tap reads, taps ordered (dilation, row offset, column offset)."""
    rows = torch.arange(H, device=device)[:, None]
    cols = torch.arange(W, device=device)[None, :]
    taps = []
    for dil in DILATIONS:
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                r = (rows + dil * a).clamp(0, H - 1)
                c = (cols + dil * b).clamp(0, W - 1)
                taps.append((r * W + c).reshape(-1))
    return torch.stack(taps, 1)


def _tap_weights(k1, k3, k5, alpha, dtype):
    """(C, 27) weight of every tap: alpha_i * K_i, in the order of :func:`_sources`."""
    return torch.cat([alpha[i].to(dtype) * k[:, 0].reshape(k.shape[0], 9).to(dtype)
                      for i, k in enumerate((k1, k3, k5))], 1)


def _matrix(k1, k3, k5, alpha, H, W, dtype):
    C, P = k1.shape[0], H * W
    src = _sources(H, W, k1.device)
    m = torch.zeros(C, P, P, dtype=dtype, device=k1.device)
    w = _tap_weights(k1, k3, k5, alpha, dtype)
    return m.scatter_add_(2, src.expand(C, P, 27), w[:, None, :].expand(C, P, 27))


def state_fusion_matrix(h, k1, k3, k5, alpha):
    """h (b, C, H, W) -> fused states, through the per-channel (HW x HW) matrices."""
    b, C, H, W = h.shape
    m = _matrix(k1, k3, k5, alpha, H, W, h.dtype)
    hc = h.reshape(b, C, H * W).permute(1, 2, 0)  # (C, HW, b)
    return torch.bmm(m, hc).permute(2, 0, 1).reshape(b, C, H, W)


def state_fusion_matrix_bwd(g, h, k1, k3, k5, alpha):
    """Explicit backward of :func:`state_fusion_matrix`: (dh, dk1, dk3, dk5, dalpha)."""
    b, C, H, W = h.shape
    P = H * W
    m = _matrix(k1, k3, k5, alpha, H, W, h.dtype)
    gc = g.reshape(b, C, P).permute(1, 2, 0)  # (C, HW, b)
    hc = h.reshape(b, C, P).permute(1, 2, 0)
    dh = torch.bmm(m.transpose(1, 2), gc).permute(2, 0, 1).reshape(b, C, H, W)
    dm = torch.bmm(gc, hc.transpose(1, 2))  # (C, HW, HW)
    src = _sources(H, W, h.device)
    dw = dm.gather(2, src.expand(C, P, 27)).sum(1)  # (C, 27)
    dks, dalpha = [], []
    for i, k in enumerate((k1, k3, k5)):
        dwi = dw[:, 9 * i:9 * (i + 1)]
        dks.append((alpha[i].to(dw.dtype) * dwi).reshape(C, 1, 3, 3).to(k.dtype))
        dalpha.append((dwi * k[:, 0].reshape(C, 9).to(dw.dtype)).sum())
    return dh.to(h.dtype), dks[0], dks[1], dks[2], torch.stack(dalpha).to(alpha.dtype)
