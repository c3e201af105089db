"""When ``F.scaled_dot_product_attention`` pays: the one rule the models and kernels use to choose between
SDPA and the explicit ``softmax(q k^T * scale) v`` (a device decision, so it lives in ``kernels/``).

- CUDA (and other accelerators): always (flash / memory-efficient kernels).
- CPU: SDPA runs its fused flash kernel, whose cost per query row hardly depends on the number of keys below
  its key block, so it pays only from a few dozen keys on. Measured (2 threads, fp32, batch 8, forward +
  backward): P2T's 54 pooled keys (49-3136 queries, d 48) and PaCa's 49 clusters (49-196 queries, d 32): the
  explicit ops take 0.55-0.88x SDPA's time; PaCa's 100 clusters: 1.19x (3136 queries) and a tie (784); RMT's
  full attention with its mask at 196 keys: a tie; at 4200 keys SDPA takes 0.45x the explicit ops' time and
  none of their N x N memory. Below ``CPU_MIN_KEYS`` keys the explicit ops run.
"""
from __future__ import annotations

from torch import Tensor

__all__ = ["CPU_MIN_KEYS", "fused_attention_pays"]

CPU_MIN_KEYS = 64


def fused_attention_pays(x: Tensor, num_keys: int) -> bool:
    """Whether SDPA beats the explicit ops for attention over ``num_keys`` keys on ``x``'s device."""
    return x.device.type != "cpu" or num_keys >= CPU_MIN_KEYS
