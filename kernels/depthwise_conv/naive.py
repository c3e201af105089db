"""Readable reference of the depthwise convolution (stride 1, dilation 1, zero padding): a sum of shifted copies
of the padded input, one per tap, weighted per channel. Autograd through it gives the reference gradients (it
shares no code with PyTorch's or oneDNN's convolution kernels)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["depthwise_conv2d_reference"]


def depthwise_conv2d_reference(x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]) -> Tensor:
    """out[b, c, y, x] = bias[c] + sum_{i, j} weight[c, 0, i, j] x[b, c, y + i - ph, x + j - pw]."""
    kh, kw = weight.shape[-2:]
    ph, pw = padding
    xp = F.pad(x, (pw, pw, ph, ph))
    ho, wo = xp.shape[-2] - kh + 1, xp.shape[-1] - kw + 1
    out = sum(weight[None, :, 0, i, j, None, None] * xp[:, :, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw))
    return out if bias is None else out + bias[None, :, None, None]
