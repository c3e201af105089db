"""softmax(q k^T + bias) v with an additive float bias (RMT's Manhattan decay mask), on the path that is fastest
where the tensors live. Not a custom kernel: a dispatch between two PyTorch paths, kept here because device
branches belong in ``kernels/``.

- CUDA: ``F.scaled_dot_product_attention`` (its memory-efficient kernel takes a float mask and keeps only the
  log-sum-exp for the backward, not the N x N probabilities);
- CPU, and while jit-tracing (FLOP counters must see the two matmuls, as in the official code): the three
  explicit ops. SDPA's CPU path for a float mask is the math path with a guard for fully masked rows
  (``isneginf`` / ``all`` / ``where`` over the scores, and its backward), ~5 % of an RMT-T training step on
  CPU, which a finite decay mask never needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["biased_attention"]


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float = 1.0) -> Tensor:
    """q, k (..., N, d), v (..., N, dv), bias broadcastable to (..., N, N); returns (..., N, dv)."""
    if q.is_cuda and not (torch.jit.is_tracing() or torch.jit.is_scripting()):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    s = q @ k.transpose(-1, -2)
    if scale != 1.0:
        s = s * scale
    return torch.softmax(s + bias, dim=-1) @ v
