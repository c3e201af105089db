"""Structure-aware state fusion (SASF) of Spatial-Mamba as one differentiable op.

    out = state_fusion(h, k1, k3, k5, alpha, folded=False, impl="auto")

h: (b, C, H, W); k1, k3, k5: (C, 1, 3, 3) depthwise kernels for dilations 1, 3, 5; alpha: (3,).
``folded=False`` computes the training form (three replicate-padded dilated 3x3 depthwise convs mixed by
alpha), ``folded=True`` the eval form (one 11x11 depthwise kernel folded from the current weights on every
call - never cached, so never stale - with replicate padding 5). The two are the same function; both are
differentiable in every input.

``impl``: ``"reference"`` (per-pixel 27-tap clamped-index loop of :mod:`.naive`), ``"torch"`` (F.conv2d,
the requested form), ``"matrix"`` (:mod:`.grid_matrix`: one HW x HW matrix per channel, batched matmuls;
for small grids, where dilated depthwise convs and their backward are slow on CPU), ``"auto"``
(``"matrix"`` up to ``grid_matrix.MAX_PIXELS`` pixels, else ``"torch"``). There is no Triton path (and no
``"triton"`` impl): with cuDNN the depthwise convs are not the bottleneck of the block (the scan and the
projections are), so a Triton kernel would not pay off.

Registered as ``spatial_mamba::state_fusion`` (custom_op + fake + autograd) for ``torch.compile``;
:func:`state_fusion_flop_jit` is its fvcore handle: 27 multiply-adds per output element (three 3x3 convs),
the count the official training-mode FLOP counter gives for either form.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .grid_matrix import MAX_PIXELS, state_fusion_matrix, state_fusion_matrix_bwd
from .naive import (DILATIONS, fold_kernel, state_fusion_bwd, state_fusion_dilated, state_fusion_folded,
                    state_fusion_ref)

__all__ = ["state_fusion", "fold_kernel", "state_fusion_dilated", "state_fusion_folded", "state_fusion_ref", "state_fusion_bwd",
           "state_fusion_matrix", "state_fusion_matrix_bwd", "state_fusion_flop_jit", "state_fusion_flops", "IMPLS", "OP_NAME", "DILATIONS"]

IMPLS = ("reference", "torch", "matrix", "auto")
OP_NAME = "spatial_mamba::state_fusion"


def _resolve(impl: str, h: Tensor) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "matrix" if h.shape[-2] * h.shape[-1] <= MAX_PIXELS else "torch"
    return impl


def _fn(folded: bool, impl: str):
    if impl == "reference":
        return state_fusion_ref
    if impl == "matrix":
        return state_fusion_matrix
    return state_fusion_folded if folded else state_fusion_dilated


@torch.library.custom_op(OP_NAME, mutates_args=())
def _state_fusion_op(h: Tensor, k1: Tensor, k3: Tensor, k5: Tensor, alpha: Tensor, folded: bool,
                     impl: str) -> Tensor:
    with torch.no_grad():
        return _fn(folded, _resolve(impl, h))(h, k1, k3, k5, alpha)


@_state_fusion_op.register_fake
def _(h, k1, k3, k5, alpha, folded, impl):
    return torch.empty_like(h)


@torch.library.custom_op("spatial_mamba::state_fusion_bwd", mutates_args=())
def _state_fusion_bwd_op(g: Tensor, h: Tensor, k1: Tensor, k3: Tensor, k5: Tensor, alpha: Tensor, folded: bool,
                         impl: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    # explicit adjoints of the convolutions and of the replicate padding (nothing but the inputs is saved)
    impl = _resolve(impl, h)
    if impl == "matrix":
        return state_fusion_matrix_bwd(g, h, k1, k3, k5, alpha)
    return state_fusion_bwd(g, h, k1, k3, k5, alpha, folded=folded and impl != "reference")


@_state_fusion_bwd_op.register_fake
def _(g, h, k1, k3, k5, alpha, folded, impl):
    return tuple(torch.empty_like(t) for t in (h, k1, k3, k5, alpha))


def _setup_context(ctx, inputs, output):
    h, k1, k3, k5, alpha, folded, impl = inputs
    ctx.save_for_backward(h, k1, k3, k5, alpha)
    ctx.folded = folded
    ctx.impl = impl


def _backward(ctx, g):
    h, k1, k3, k5, alpha = ctx.saved_tensors
    # under autocast the incoming gradient can arrive in a lower precision than the (fp32) output
    grads = _state_fusion_bwd_op(g.to(h.dtype).contiguous(), h, k1, k3, k5, alpha, ctx.folded, ctx.impl)
    return (*(_in_layout_of(d, t) for d, t in zip(grads, (h, k1, k3, k5, alpha))), None, None)


def _in_layout_of(grad: Tensor, t: Tensor) -> Tensor:
    """``grad`` with the strides of the input ``t``: a model converted with ``.to(memory_format=channels_last)``
    holds its (C, 1, 3, 3) kernels channels-last, and DDP copies every gradient whose strides differ from its
    parameter's into the bucket at every step (with a warning)."""
    return grad if grad.stride() == t.stride() else torch.empty_like(t).copy_(grad)


_state_fusion_op.register_autograd(_backward, setup_context=_setup_context)


def state_fusion(h: Tensor, k1: Tensor, k3: Tensor, k5: Tensor, alpha: Tensor, folded: bool = False,
                 impl: str = "auto") -> Tensor:
    """SASF of the states h (b, C, H, W); see the module docstring."""
    if h.dim() != 4:
        raise ValueError(f"h must be (batch, C, H, W), got {tuple(h.shape)}")
    C = h.shape[1]
    for name, k in (("k1", k1), ("k3", k3), ("k5", k5)):
        if tuple(k.shape) != (C, 1, 3, 3):
            raise ValueError(f"{name} must be (C={C}, 1, 3, 3), got {tuple(k.shape)}")
    if alpha.numel() != 3:
        raise ValueError(f"alpha must have 3 elements, got {tuple(alpha.shape)}")
    _resolve(impl, h)  # validates impl
    return _state_fusion_op(h.contiguous(), k1, k3, k5, alpha, folded, impl)


def state_fusion_flops(batch: int, channels: int, height: int, width: int) -> int:
    """27 multiply-adds per output element, as fvcore counts the three 3x3 depthwise convs."""
    return 27 * batch * channels * height * width


def state_fusion_flop_jit(inputs, outputs) -> int:
    """fvcore handle: ``FlopCountAnalysis(...).set_op_handle(OP_NAME, state_fusion_flop_jit)``."""
    b, C, H, W = inputs[0].type().sizes()
    return state_fusion_flops(b, C, H, W)
