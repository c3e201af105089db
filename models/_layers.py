"""Small pieces shared by several model families."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
from timm.layers import trunc_normal_

from kernels.depthwise_conv import depthwise_conv2d


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


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(dim, dim, kernel_size, stride, padding, groups=dim)`` (same parameters, keys and outputs) that runs
    through :func:`kernels.depthwise_conv.depthwise_conv2d` where it applies (stride 1, integer zero padding): on
    the CPU its weight gradient is compiled for kernels larger than 3 x 3, where oneDNN's is slow."""

    def __init__(self, dim: int, kernel_size, stride=1, padding=0, bias: bool = True):
        super().__init__(dim, dim, kernel_size, stride, padding, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1) or self.dilation != (1, 1) or self.padding_mode != "zeros" \
                or isinstance(self.padding, str):
            return super().forward(x)
        return depthwise_conv2d(x, self.weight, self.bias, self.padding)


def weight_memory_format(conv: nn.Conv2d) -> torch.memory_format:
    """The layout of ``conv``'s weight: channels-last in a channels-last model (:func:`to_channels_last`), else
    contiguous. Tensors the conv reads should have it: given an input of the other layout, the conv takes another
    oneDNN algorithm, which rounds differently. Only for weights whose layout shows (kernel > 1 and more than one
    input channel per group): the strides of a (C, 1, k, k) or (O, I, 1, 1) weight fit both layouts."""
    return torch.contiguous_format if conv.weight.is_contiguous() else torch.channels_last


# The activations that have an in-place form, by module type (exact: a subclass may compute something else).
_IN_PLACE = {
    nn.GELU: lambda act, x: torch.ops.aten.gelu_(x, approximate=act.approximate),
    nn.Hardswish: lambda act, x: F.hardswish(x, inplace=True),
    nn.SiLU: lambda act, x: F.silu(x, inplace=True),
    nn.ReLU: lambda act, x: torch.relu_(x),
}


def _no_graph(*tensors: torch.Tensor) -> bool:
    """True when no gradient is recorded through these tensors (``torch.no_grad``, ``inference_mode``, frozen
    layers) and no jit trace is running (traces keep the official graph: fvcore counts its ops)."""
    return not torch.jit.is_tracing() and not any(t.requires_grad for t in tensors)


def records_graph(module: nn.Module, x: torch.Tensor) -> bool:
    """True when a gradient is recorded through ``module`` called on ``x`` (grad mode on, and ``x`` or one of the
    module's parameters wants a gradient) outside a jit trace: where a module may take its own autograd
    function instead of its ops."""
    return (torch.is_grad_enabled() and not torch.jit.is_tracing()
            and (x.requires_grad or any(p.requires_grad for p in module.parameters())))


def activate(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` for an ``x`` that is a layer's fresh output, held by nobody but the caller: computed in place
    when no gradient is recorded through ``x``. That saves one activation-sized tensor, and on CPU the page
    faults of a new one (P2T-T inference, 224^2, batch 8, 2 threads: 0.38 -> 0.29 s per batch). The values are
    the same. With a gradient the activation's backward needs its input, so it is ``act(x)``. As with
    ``ReLU(inplace=True)``, a forward hook that keeps the layer's output should keep a clone."""
    in_place = _IN_PLACE.get(type(act)) if _no_graph(x) else None
    return in_place(act, x) if in_place is not None else act(x)


def add_to_fresh(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other + fresh`` for a ``fresh`` that is a layer's new output, held by nobody but the caller (a residual
    branch added to its input): written into ``fresh`` when no gradient is recorded and ``fresh`` has the sum's
    dtype, shape and layout (those of ``other``: under autocast a bf16 branch plus an fp32 input is fp32, and of
    two layouts the sum takes the first one's); a new tensor otherwise. The values are the same either way
    (addition commutes exactly)."""
    if (_no_graph(fresh, other) and fresh.dtype == torch.result_type(fresh, other)
            and fresh.shape == other.shape and fresh.stride() == other.stride()):
        return fresh.add_(other)
    return other + fresh


class FreshActivation(nn.Module):
    """An activation in an ``nn.Sequential`` right after a layer (conv, linear, norm) whose output only the
    Sequential holds: :func:`activate`, in place in inference. Holds no parameters (checkpoint keys unchanged)."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(self.act, x)


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


GRAD_CHECKPOINTING_MODES = (False, True, 'selective')


def grad_checkpointing_mode(enable, name: str = "set_grad_checkpointing: enable") -> bool | str:
    """Checks a ``set_grad_checkpointing(enable)`` value (``name`` says where it came from in the error): False,
    True (every block's activations recomputed in backward) or ``'selective'`` (only the cheap ones, see
    :func:`run_block`)."""
    if isinstance(enable, (bool, str)) and enable in GRAD_CHECKPOINTING_MODES:  # (1 == True: no ints)
        return enable
    raise ValueError(f"{name} must be one of {GRAD_CHECKPOINTING_MODES}, got {enable!r}")


_aten = torch.ops.aten
_MATMULS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default}
# this project's depthwise convolution (DepthwiseConv2d): outside aten, but as cheap to recompute as aten's
_DEPTHWISE_CONV = torch.ops.depthwise_conv.conv2d.default


def _selective_policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """What a ``'selective'`` block keeps from its forward: the outputs of the costly ops (matmuls, dense
    convolutions, attention: SDPA and every op outside ``aten``, as this project's kernels but its depthwise
    convolution) and of batch norms, whose running statistics must be updated once (the module's
    ``num_batches_tracked``, an in-place add that cannot be cached, counts the recompute too, as under full
    checkpointing: it only matters with ``momentum=None``). The rest (norms, activations, depthwise convs, RoPE,
    layout copies, residual adds) is recomputed in backward from those outputs and the block's input."""
    name = op.name()
    if op is _DEPTHWISE_CONV:
        return CheckpointPolicy.PREFER_RECOMPUTE
    if op in _MATMULS or not name.startswith('aten::') or 'attention' in name or 'batch_norm' in name:
        return CheckpointPolicy.MUST_SAVE
    if op is _aten.convolution.default:
        weight, groups = args[1], args[8]
        depthwise = groups > 1 and weight.shape[1] == 1
        return CheckpointPolicy.PREFER_RECOMPUTE if depthwise else CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def run_block(block, *args, checkpointed: bool | str):
    """``block(*args)``, with its activations recomputed in backward when ``checkpointed``
    (``set_grad_checkpointing``) and gradients are being recorded: the one grad-checkpointing rule of every
    family (no effect under ``torch.no_grad`` or when scripting; the same in train and eval mode).
    ``checkpointed='selective'`` keeps what :func:`_selective_policy` says (PyTorch's selective activation
    checkpointing): far less memory than no checkpointing for about half the time full checkpointing costs
    (RMT-T training step, 800x1344, CPU: allocator peak 2279 -> 1285 MiB for 12 % less throughput; full
    checkpointing: 820 MiB for 25 % less). The recomputed values are those of the forward, so outputs and
    gradients are the same bit for bit. As PyTorch's rule for selective checkpointing, a forward allows one
    backward (no ``retain_graph`` second pass)."""
    if checkpointed and torch.is_grad_enabled() and not torch.jit.is_scripting():
        context_fn = torch.utils.checkpoint.noop_context_fn
        if checkpointed == 'selective':
            context_fn = functools.partial(create_selective_checkpoint_contexts, _selective_policy)
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False, context_fn=context_fn)
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
