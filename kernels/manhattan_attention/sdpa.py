"""The PyTorch path of the Manhattan attention: ``softmax(scale q k^T + bias) v`` with the explicit masks, on the
PyTorch kernel that is fastest where the tensors live:

- CUDA: ``F.scaled_dot_product_attention`` (its memory-efficient kernel takes a float mask and keeps only the
  log-sum-exp for the backward, not the N x N probabilities);
- CPU, 4-D inputs, a bias without gradient and enough keys to pay (the full mode at detection sizes,
  ``kernels.fused_attention``): SDPA as well, which there runs its fused flash kernel (tiles of the scores stay
  in cache; the backward recomputes them from the log-sum-exp): at N = 4200 (60 x 70, 8 heads, d 32, 2
  threads) 4.1x faster forward and 2.2x forward + backward than the explicit ops;
- CPU otherwise (the axial mode: 5-D, short lines, where the explicit ops are as fast; a bias that needs its
  gradient, which the flash kernel does not give): the three explicit ops. SDPA would take its math path there,
  with a guard for fully masked rows (``isneginf`` / ``all`` / ``where`` over the scores, and its backward),
  ~5 % of an RMT-T training step on CPU, which a finite decay mask never needs.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..fused_attention import fused_attention_pays
from .naive import explicit_attention

__all__ = ["biased_attention"]


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float = 1.0) -> Tensor:
    """q, k (..., N, d), v (..., N, dv), bias broadcastable to (..., N, N); returns (..., N, dv)."""
    flash_cpu = q.dim() == 4 and bias.dim() == 4 and not bias.requires_grad
    if fused_attention_pays(q, k.shape[-2]) and (q.device.type != "cpu" or flash_cpu):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    return explicit_attention(q, k, v, bias, scale)
