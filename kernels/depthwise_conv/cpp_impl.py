"""The compiled CPU weight and bias gradients of the depthwise convolution (``weight_grad_cpu.cpp``); the forward
and the input gradient stay PyTorch's (oneDNN's), which are fast for every kernel size.

Built by ``python -m kernels.build_cpu``; when it is not built, ``impl="auto"`` takes the PyTorch path and
``impl="cpp"`` says how to build it."""
from __future__ import annotations

import torch
from torch import Tensor

from ..cpu_extension import CompiledExtension

__all__ = ["cpp_available", "cpp_unavailable_reason", "weight_grad_cpp"]

_EXT = CompiledExtension("depthwise convolution", "kernels.depthwise_conv._weight_grad_cpu")


def cpp_available() -> bool:
    return _EXT.available


def cpp_unavailable_reason() -> str:
    return _EXT.reason


def _channels_last(t: Tensor) -> Tensor:
    """The kernel reads a pixel's channels as adjacent elements (any other strides); a copy only where they are not."""
    return t if t.stride(1) == 1 or t.shape[1] == 1 else t.contiguous(memory_format=torch.channels_last)


def weight_grad_cpp(x: Tensor, grad_out: Tensor, kernel_size: tuple[int, int], padding: tuple[int, int],
                    with_bias: bool) -> tuple[Tensor, Tensor]:
    """The weight gradient (C, 1, kh, kw) and the bias gradient (C,) (empty unless ``with_bias``) from the input
    (B, C, H, W) and the output gradient (B, C, Ho, Wo)."""
    return tuple(_EXT.require()[0].weight_grad(_channels_last(x), _channels_last(grad_out), *kernel_size, *padding,
                                               with_bias))
