"""Depthwise 2-D convolution (stride 1, dilation 1, zero padding) with a compiled CPU weight gradient.

Public entry point::

    out = depthwise_conv2d(x, weight, bias=None, padding=(ph, pw), impl="auto")

* ``x`` (B, C, H, W), ``weight`` (C, 1, kh, kw), ``bias`` (C,) or None: ``F.conv2d(x, weight, bias, 1, padding,
  groups=C)``, the same outputs bit for bit on every path but ``"reference"``.
* ``impl``:

  - ``"reference"``: a sum of shifted copies of the padded input (``naive.py``), gradients by autograd;
  - ``"torch"``: ``F.conv2d``;
  - ``"cpp"``: ``F.conv2d`` forward and PyTorch's input gradient; the weight and bias gradients compiled for the
    CPU (``weight_grad_cpu.cpp``; see ``benchmarks/bench_depthwise_conv.py``);
    registered as the ``depthwise_conv::conv2d`` custom op (fake kernel, autograd) so ``torch.compile`` sees one
    op (with no gradient to compute, ``F.conv2d`` itself); fp32 / fp64, no double backward;
  - ``"auto"``: ``"cpp"`` for CPU fp32 / fp64 tensors outside autocast with kernels of more than 3 x 3 taps when it is
    built (oneDNN's own 3 x 3 weight gradient is as fast), ``"torch"`` otherwise.

  While jit-tracing (FLOP counters) the ``"torch"`` path runs, so that the counters see an ``aten::_convolution``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .cpp_impl import cpp_available, cpp_unavailable_reason, weight_grad_cpp
from .naive import depthwise_conv2d_reference

__all__ = ["IMPLS", "depthwise_conv2d", "depthwise_conv2d_reference"]

IMPLS = ("reference", "torch", "cpp", "auto")
_CPP_DTYPES = (torch.float32, torch.float64)


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    """PyTorch's depthwise convolution: the forward of every path but the reference."""
    return F.conv2d(x, weight, bias, 1, (ph, pw), 1, x.shape[1])


@torch.library.custom_op("depthwise_conv::weight_grad", mutates_args=())
def _weight_grad(x: Tensor, grad_out: Tensor, kh: int, kw: int, ph: int, pw: int,
                 with_bias: bool) -> tuple[Tensor, Tensor]:
    return weight_grad_cpp(x, grad_out, (kh, kw), (ph, pw), with_bias)


@_weight_grad.register_fake
def _(x, grad_out, kh, kw, ph, pw, with_bias):
    return x.new_empty(x.shape[1], 1, kh, kw), x.new_empty(x.shape[1] if with_bias else 0)


@torch.library.custom_op("depthwise_conv::conv2d", mutates_args=())
def _conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    return _conv(x, weight, bias, ph, pw)


@_conv2d.register_fake
def _(x, weight, bias, ph, pw):
    return _conv(x, weight, bias, ph, pw)  # on fake tensors: the real op's shape and strides


def _setup(ctx, inputs, output):
    x, weight, bias, ph, pw = inputs
    ctx.save_for_backward(x, weight)
    ctx.padding = (ph, pw)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    # oneDNN's input gradient alone (asking it for the bias gradient runs its slow weight-gradient kernel)
    dx = torch.ops.aten.convolution_backward(grad_out, x, weight, None, [1, 1], list(ctx.padding), [1, 1], False,
                                             [0, 0], x.shape[1], [True, False, False])[0] if need_x else None
    dw = db = None
    if need_w or need_b:
        dw, db = _weight_grad(x, grad_out, *weight.shape[-2:], *ctx.padding, need_b)
        if dw.stride() != weight.stride():  # the gradient in the weight's layout, as DDP's buckets expect
            dw = torch.empty_like(weight).copy_(dw)
    return dx, dw if need_w else None, db if need_b else None, None, None


_conv2d.register_autograd(_backward, setup_context=_setup)


def _resolve_impl(impl: str, x: Tensor, weight: Tensor) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    cpp_ok = x.device.type == "cpu" and x.dtype in _CPP_DTYPES and not torch.is_autocast_enabled("cpu")
    if impl == "auto":
        return "cpp" if cpp_ok and weight.shape[-2] * weight.shape[-1] > 9 and cpp_available() else "torch"
    if impl == "cpp":
        if not cpp_ok:
            raise ValueError(f"impl='cpp' runs on fp32 / fp64 CPU tensors outside autocast, got {x.dtype} on "
                             f"{x.device.type}")
        if not cpp_available():
            raise RuntimeError("impl='cpp' was requested but the compiled CPU depthwise convolution is not built "
                               f"(run `python -m kernels.build_cpu`): {cpp_unavailable_reason()}")
    return impl


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, padding: tuple[int, int] = (0, 0), *,
                     impl: str = "auto") -> Tensor:
    """Depthwise convolution; see the module docstring."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():  # (before the checks, whose shape tests a trace records)
        return _conv(x, weight, bias, *padding)
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[:2] != (x.shape[1], 1) \
            or (bias is not None and bias.shape != (x.shape[1],)):
        raise ValueError(f"expected x (B, C, H, W), weight (C, 1, kh, kw), bias (C,) or None; got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}, {None if bias is None else tuple(bias.shape)}")
    ph, pw = (int(p) for p in padding)
    impl = _resolve_impl(impl, x, weight)
    if impl == "reference":
        return depthwise_conv2d_reference(x, weight, bias, (ph, pw))
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if impl == "torch" or not grads:  # (the op differs from F.conv2d only in its backward: no custom-op overhead)
        return _conv(x, weight, bias, ph, pw)
    return _conv2d(x, weight, bias, ph, pw)
