"""The dtype every kernel path computes in: fp32, or fp64 for fp64 inputs (gradient checks)."""
from __future__ import annotations

import torch

__all__ = ["compute_dtype"]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32
