"""Small pieces shared by several model families."""
from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn
from timm.layers import trunc_normal_


def init_weights_trunc_normal(m: nn.Module) -> None:
    """The official initialisation of the PPMA, P2T, MPViT and Spatial-Mamba transformers (``model.apply``):
    trunc-normal(std 0.02) Linear weights with zero biases, LayerNorm weight 1 / bias 0; every other module
    (convs, BN, SSM parameters) keeps its own initialisation."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def channels_last_weights(module: nn.Module) -> None:
    """Stores the weights of ``module``'s convolutions channels-last. For convolutions whose input is always a
    permuted (B, H, W, C) tensor, which is channels-last in memory: their weight gradients arrive channels-last,
    and a parameter of other strides makes DDP copy the gradient into its bucket at every step (with its "grad
    strides do not match bucket view strides" warning). Loading, ``.to()`` and in-place inits keep the layout."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            # .to() restrides a (C, 1, k, k) weight that .contiguous() would call channels-last already
            m.weight.data = m.weight.data.to(memory_format=torch.channels_last)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model.to(memory_format=torch.channels_last)`` (timm's ``--channels-last``), except for 4-d parameters
    with at most one dimension above 1 (PPMA/RMT's (1, 1, 1, C) layer scales): both layouts are the same
    memory for them, and their gradients, reductions over a batch, come out contiguous; a parameter of other
    strides makes DDP copy the gradient into its bucket at every step (with a warning)."""
    model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        if p.dim() == 4 and sum(n > 1 for n in p.shape) <= 1:
            p.data = p.data.clone(memory_format=torch.contiguous_format)
    return model


def run_block(block, *args, checkpointed: bool):
    """``block(*args)``, with its activations recomputed in backward when ``checkpointed``
    (``set_grad_checkpointing``) and gradients are being recorded: the one grad-checkpointing rule of every
    family (no effect under ``torch.no_grad`` or when scripting; the same in train and eval mode)."""
    if checkpointed and torch.is_grad_enabled() and not torch.jit.is_scripting():
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def linear_head(num_features: int, num_classes: int) -> nn.Module:
    """A classifier as every family initialises its own: ``Linear`` with trunc-normal(std 0.02) weights and zero
    bias, or ``Identity`` for ``num_classes=0`` (``reset_classifier`` of every model builds its new head here)."""
    if num_classes <= 0:
        return nn.Identity()
    head = nn.Linear(num_features, num_classes)
    init_weights_trunc_normal(head)
    return head


def check_global_pool(model_name: str, global_pool: str | None, supported: tuple[str, ...]) -> None:
    """Raises ``ValueError`` unless ``global_pool`` is None (keep the current one) or one the model supports."""
    if global_pool is not None and global_pool not in supported:
        raise ValueError(f"{model_name}: global_pool must be one of {supported}, got {global_pool!r}")


def check_image_batch(model_name: str, x, in_chans: int, min_size: int = 1, why: str = "",
                      weight_dtype: torch.dtype | None = None) -> None:
    """Raises ``ValueError`` naming the problem unless ``x`` is a (B, in_chans, H, W) floating-point batch with
    H, W >= ``min_size`` (``why`` says where the minimum comes from) and, outside autocast, the dtype of the
    model's weights ``weight_dtype``."""
    if not x.is_floating_point():
        raise ValueError(f"{model_name} expects a normalised floating-point image batch, got {x.dtype}: convert "
                         f"and normalise it first (timm's transforms and loaders do both)")
    if (weight_dtype is not None and x.dtype != weight_dtype and not torch.jit.is_tracing()
            and not torch.is_autocast_enabled(x.device.type)):
        raise ValueError(f"{model_name}'s weights are {weight_dtype} and the input is {x.dtype}: convert one to "
                         f"the other (x.to({weight_dtype}) or model.to({x.dtype})), or run under torch.autocast")
    if x.ndim != 4:
        raise ValueError(f"{model_name} expects a 4-D (B, C, H, W) image batch, got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(f"{model_name} was built for {in_chans} input channels, got {x.shape[1]} "
                         f"(input shape {tuple(x.shape)})")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < min_size or w < min_size:
        raise ValueError(f"{model_name} needs inputs of at least {min_size}x{min_size} pixels"
                         f"{f' ({why})' if why else ''}, got {h}x{w}")
