"""PPMA: Polyline Path Masked Attention for Vision Transformer, and its RMT baselines.

Papers: `Polyline Path Masked Attention for Vision Transformer` (Zhao et al., NeurIPS 2025, arXiv 2506.15940);
`RMT: Retentive Networks Meet Vision Transformers` (Fan et al., CVPR 2024).
Official code: https://github.com/zhongchenzhao/PPMA (Apache-2.0; ``classification/models/PPMA.py`` and
``RMT.py``). This file is an independent reimplementation on torch + timm that loads the official
classification checkpoints as published.

Architecture (identical for PPMA and RMT apart from the attention):

- stem ``patch_embed.proj``: four 3x3 convs (strides 2, 1, 2, 1; C/2, C/2, C, C channels) with BatchNorm,
  GELU between them; output channels-last (B, H/4, W/4, C1).
- four stages ``layers.{s}``; each has a 1-D-raster RoPE table (``Relpos``: buffer ``angle``, position
  index p = i * W + j), blocks, and (stages 0-2) a ``downsample`` (conv 3x3 s2 + BatchNorm).
- block (channels-last): ``x + pos(x)`` (depthwise 3x3, CPE) then
  ``x + DropPath(gamma_1 * attn(LN(x)))`` and ``x + DropPath(gamma_2 * FFN(LN(x)))`` (LN eps 1e-6; layer
  scale only in PPMA/RMT-B stages 3-4). FFN: fc1, GELU, ``y + dwconv3x3(y)``, fc2.
- attention (``retention``): q, k, v projections, LePE (depthwise 5x5 on v), k scaled by d^-0.5, RoPE on q and
  k, then

  * PPMA (``PolylinePathAttention``): an input-dependent polyline mask. ``path_embed`` maps every head's
    d-vector of the LayerNorm-ed block input with a Linear(d, 2) shared by all heads to
    ``log_alpha, log_beta = A_h * softplus(w . x + dt_bias_h)`` with ``A_h = -exp(A_log_h)``.
    ``'full'`` stages compute ``1/2 softmax(S + M) v + 1/2 softmax(S + M^T) v`` with the 2-D polyline
    log-mask M (kernel ``kernels.polyline_attention``; the default CPU path is memory-efficient and never
    materialises N x N tensors); ``'criss_cross'`` stages run row and column attention with the 1-D masks
    in both orders and average them.
  * RMT (``ManhattanAttention``): fixed per-head decay ``log gamma_h`` (buffer ``Relpos.decay``) with the
    Manhattan-distance mask ``(|di| + |dj|) log gamma_h``; full stages use one softmax over all tokens,
    decomposed stages run row attention then column attention (one order only). Kernel
    ``kernels.manhattan_attention`` (on CPU compiled, the decay computed on the fly: no mask, no probabilities in
    memory; SDPA with the stage's masks on CUDA).

- classifier: ``proj`` Linear(512 -> 1024) on the last stage, ``norm`` BatchNorm2d(1024), swish, token mean,
  ``head`` Linear(1024 -> num_classes). ``num_features`` is 1024 (the pooled pre-logits width).

Stages use full attention or criss-cross attention as in the official factories: T ``[cc, cc, full, full]``,
S and B ``[cc, cc, cc, full]``.

Checkpoints: our module names equal the official ones, so :func:`checkpoint_filter_fn` accepts the official
key layout as it is (``patch_embed.proj.*``, ``layers.{s}.Relpos.angle`` (+ ``.decay`` for RMT),
``layers.{s}.blocks.{b}.{pos,retention_layer_norm,retention,final_layer_norm,ffn,gamma_1,gamma_2}.*``,
``layers.{s}.downsample.{reduction,norm}.*``, ``proj``, ``norm``, ``head``), in any container the official
code writes (``model``, ``models``, ``model_ema``, ``state_dict``; see ``models/_checkpoint.py``).

Downstream (detection / segmentation) backbone: ``out_norm=True`` adds the official ``Backbone_PPMAViT``
output norms ``outnorm{i}`` (nn.LayerNorm, eps 1e-5) applied to every stage output (before downsampling) in
``forward_intermediates`` / ``features_only``. With ``out_norm=True`` official backbone checkpoints (keys
``outnorm{i}.*``, no classifier) load as well, and classification checkpoints load into it leaving the
output norms at their identity initialisation, exactly like the official backbone loader.

Differences from the official code (none changes the outputs of official weights):

- ``drop_path_rate`` defaults to the official per-variant value (0.1 / 0.15 / 0.4) and is honoured (the
  official factories hard-code it and ignore ``--drop_path``).
- ``mask_placement`` (PPMA only): ``'logits'`` (official) or ``'post_softmax'`` (paper notation, ablation);
  see ``kernels/polyline_attention/naive.py``. ``attn_impl`` selects the kernel path
  (``'auto' | 'torch' | 'cpp' | 'triton' | 'reference'``).
- ``no_weight_decay`` returns an empty set (the official one names parameters that do not exist).
- the official ``MemoryEfficientSwish`` autograd function is replaced by ``x * sigmoid(x)`` (same values).
- inputs smaller than 32x32 raise ``ValueError`` (the stride-32 stage would be empty on the natural grid).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from kernels.manhattan_attention import manhattan_attention, manhattan_masks, masks_needed
from kernels.polyline_attention import FVCORE_OP_HANDLES, polyline_attention

from ._builder import build_model
from ._layers import (
    DepthwiseConv2d, FreshActivation, activate, add_to_fresh, channels_last_weights, check_global_pool,
    check_image_batch, grad_checkpointing_mode, init_weights_trunc_normal, linear_head, records_graph, run_block,
    weight_memory_format)
from ._checkpoint import FilteredState, load_checkpoint

__all__ = ["ManhattanAttention", "PPMAViT", "PathEmbedding2D", "PolylinePathAttention", "checkpoint_filter_fn",
           "flop_count_handles"]

MIN_INPUT_SIZE = 32


# ---------------------------------------------------------------------------------------------- helpers
class DWConv2d(nn.Module):
    """Depthwise conv on channels-last tensors (B, H, W, C)."""

    def __init__(self, dim: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = DepthwiseConv2d(dim, kernel_size, stride, padding)
        channels_last_weights(self)  # the input is always a permuted (B, H, W, C) tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _swap_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (x1, x0, x3, x2, ...), a new tensor in ``x``'s layout (two strided copies: twice
    as fast as ``flip`` on a last dimension of 2)."""
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 1::2]
    out[..., 1::2] = x[..., 0::2]
    return out


class _RoPE(torch.autograd.Function):
    """``x cos + swap_pairs(x) sin`` and its gradient ``g cos + swap_pairs(g sin)`` (swap_pairs is its own
    transpose), the tables constants. Autograd's backward of the in-place formula copied the swapped view back
    through CopySlices and AsStrided nodes: RoPE took 62 ms of a PPMA-T training step (224², batch 8), now 41."""

    @staticmethod
    def forward(ctx, x, sin, cos):
        ctx.save_for_backward(sin, cos)
        return (x * cos).add_(_swap_pairs(x).mul_(sin))

    @staticmethod
    def backward(ctx, grad):
        sin, cos = ctx.saved_tensors
        return (grad * cos).add_(_swap_pairs(grad * sin)), None, None


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """The official ``x cos + rotate(x) sin``, rotate(x) = (-x1, x0, -x3, x2, ...), bit for bit, and its gradient
    too. ``sin`` is :class:`RotaryPositionEmbedding2D`'s table with the rotation's signs in it, so that rotate(x) sin
    = swap_pairs(x) sin: two new tensors instead of five (the second product and the sum written in place). Tables
    that need a gradient (never in the models: they are made from buffers) go through autograd's own formula."""
    if sin.requires_grad or cos.requires_grad:
        return (x * cos).add_(_swap_pairs(x) * sin)
    return _RoPE.apply(x, sin, cos)


class RotaryPositionEmbedding2D(nn.Module):
    """RoPE tables on the flattened raster index (official ``RotaryPositionEmbedding2D``/``RetNetRelPos2d``).

    ``angle = 1 / 10000 ** linspace(0, 1, d / 2)``, each entry repeated twice. With ``decay=True`` (RMT) it
    also holds the fixed per-head log decay ``log(1 - 2 ** (-init_value - heads_range * h / num_heads))``.
    """

    def __init__(self, embed_dim: int, num_heads: int, init_value: float = 2.0, heads_range: float = 4.0,
                 decay: bool = False):
        super().__init__()
        angle = 1.0 / (10000 ** torch.linspace(0, 1, embed_dim // num_heads // 2))
        self.register_buffer('angle', angle.unsqueeze(-1).repeat(1, 2).flatten())
        if decay:
            d = torch.log(1 - 2 ** (-init_value - heads_range * torch.arange(num_heads, dtype=torch.float)
                                    / num_heads))
            self.register_buffer('decay', d)
        else:
            self.decay = None

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos) tables (h, w, head_dim) for :func:`apply_rope`; sin with the rotation's signs: -sin at even
        channels, +sin at odd ones."""
        index = torch.arange(h * w).to(self.angle)
        phase = index[:, None] * self.angle[None, :]
        sin = torch.sin(phase)
        sin[:, 0::2].neg_()
        return sin.reshape(h, w, -1), torch.cos(phase).reshape(h, w, -1)

    def manhattan_masks(self, h: int, w: int, full: bool) -> tuple[torch.Tensor, ...]:
        """The masks one RMT stage's blocks share, built once per stage call as the official ``RetNetRelPos2d``
        does: ``(mask (1, n, N, N),)`` for full attention, ``(mask_h (n, H, H), mask_w (n, W, W))`` otherwise."""
        return manhattan_masks(self.decay, h, w, 'full' if full else 'axial')


class PathEmbedding2D(nn.Module):
    """Input-dependent polyline decays (official ``PathEmbeding2D``; Mamba2-style dt * A per head).

    ``forward(x)`` with x (B, H, W, C) returns ``log_alpha, log_beta`` of shape (B, n, H, W), both < 0.
    """

    def __init__(self, embed_dim: int, num_heads: int, a_init_range=(1.0, 1.1), dt_min: float = 1e-3,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.num_heads = num_heads
        self.dt_linear = nn.Linear(embed_dim // num_heads, 2, bias=False)
        dt = torch.exp(torch.rand(num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.empty(num_heads).uniform_(*a_init_range).log())
        self.dt_bias._no_weight_decay = True
        self.A_log._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, w, c = x.shape
        dt = self.dt_linear(x.reshape(b, h * w, self.num_heads, c // self.num_heads))  # (B, N, n, 2)
        a = -torch.exp(self.A_log)
        log_alpha = F.softplus(dt[..., 0] + self.dt_bias) * a
        log_beta = F.softplus(dt[..., 1] + self.dt_bias) * a
        log_alpha = log_alpha.reshape(b, h, w, self.num_heads).permute(0, 3, 1, 2)
        log_beta = log_beta.reshape(b, h, w, self.num_heads).permute(0, 3, 1, 2)
        return log_alpha, log_beta


class _AttentionBase(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.lepe = DWConv2d(dim, 5, 1, 2)
        self.out_proj = nn.Linear(dim, dim)

    def _qkv(self, x, sin, cos):
        b, h, w, _ = x.shape
        q = self.q_proj(x)
        k = self.k_proj(x) * self.scaling
        v = self.v_proj(x)
        lepe = self.lepe(v)
        q = q.view(b, h, w, self.num_heads, self.head_dim).permute(0, 3, 1, 2, 4)  # (B, n, H, W, d)
        k = k.view(b, h, w, self.num_heads, self.head_dim).permute(0, 3, 1, 2, 4)
        v = v.view(b, h, w, self.num_heads, self.head_dim).permute(0, 3, 1, 2, 4)
        return apply_rope(q, sin, cos), apply_rope(k, sin, cos), v, lepe

    def _out(self, o, lepe):
        """(B, n, H, W, d) -> (B, H, W, C), + LePE, out_proj."""
        b, n, h, w, d = o.shape
        return self.out_proj(add_to_fresh(o.permute(0, 2, 3, 1, 4).reshape(b, h, w, n * d), lepe))


class PolylinePathAttention(_AttentionBase):
    """PPMA attention (official ``MambaAttentionAllDouble`` for ``mode='full'``, ``MambaAttentionChunkDouble``
    for ``mode='criss_cross'``)."""

    def __init__(self, dim: int, num_heads: int, mode: str = 'full', mask_placement: str = 'logits',
                 attn_impl: str = 'auto'):
        super().__init__(dim, num_heads)
        self.mode = mode
        self.mask_placement = mask_placement
        self.attn_impl = attn_impl
        self.path_embed = PathEmbedding2D(dim, num_heads)

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, decay_masks=None) -> torch.Tensor:
        q, k, v, lepe = self._qkv(x, sin, cos)
        log_a, log_b = self.path_embed(x)
        o = polyline_attention(q, k, v, log_a, log_b, mode=self.mode, scale=1.0, impl=self.attn_impl,
                               mask_placement=self.mask_placement)
        return self._out(o, lepe)


def _manhattan_impl(attn_impl: str) -> str:
    return 'torch' if attn_impl == 'triton' else attn_impl  # no Triton kernel: its PyTorch path (SDPA on CUDA)


class ManhattanAttention(_AttentionBase):
    """RMT attention with the fixed Manhattan decay (official ``VisionRetentionAll`` / ``VisionRetentionChunk``)."""

    def __init__(self, dim: int, num_heads: int, mode: str = 'full', attn_impl: str = 'auto'):
        super().__init__(dim, num_heads)
        self.mode = mode
        self.attn_impl = _manhattan_impl(attn_impl)

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, decay_masks=None) -> torch.Tensor:
        """``decay_masks``: the stage's ``(decay, masks)``, masks None where the kernel path needs none."""
        q, k, v, lepe = self._qkv(x, sin, cos)
        decay, masks = decay_masks
        mode = 'full' if self.mode == 'full' else 'axial'  # criss-cross stages: RMT's rows-then-columns pass
        o = manhattan_attention(q, k, v, decay, mode=mode, scale=1.0, impl=self.attn_impl, masks=masks)
        return self._out(o, lepe)


def _ffn_hidden(h1: torch.Tensor, wd: torch.Tensor, bd: torch.Tensor, approximate: str):
    """GELU(h1) and the fc2 input ``g + dwconv3x3(g)``, g = GELU(h1), from the fc1 output ``h1`` (B, H, W, C)."""
    g = F.gelu(h1, approximate=approximate)
    conv = F.conv2d(g.permute(0, 3, 1, 2), wd, bd, 1, 1, 1, g.shape[-1]).permute(0, 2, 3, 1)
    return g, conv.add_(g)  # (into the conv's fresh output: the sum commutes exactly with FeedForward's)


class _RecomputedFeedForward(torch.autograd.Function):
    """``FeedForward(LayerNorm(x))`` keeping for backward only ``x`` and the fc1 output: the LayerNorm, GELU and
    depthwise conv run again there. The outputs and the gradients are :class:`FeedForward`'s bit for bit, but the
    conv's bias gradient: a sum over the grid in another order (fp32 rounding). Under autocast the FFN casts as
    autocast does (the linears' and the conv's inputs to its dtype), runs its backward in that dtype and returns
    each gradient in its input's dtype, as autograd's cast nodes do; the LayerNorm (whose autocast policy differs
    between devices) runs under autocast as it was, and is differentiated by autograd."""

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, w1, b1, wd, bd, w2, b2, norm_args, approximate: str):
        device = x.device.type
        ctx.autocast = torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)
        xn = F.layer_norm(x, norm_args[0], ln_w, ln_b, norm_args[1]) if norm_args else x
        # the dtype autocast runs the linears and the conv in (it leaves fp64 alone)
        dtype = ctx.autocast[1] if ctx.autocast[0] and xn.dtype != torch.float64 else xn.dtype
        with torch.autocast(device, enabled=False):
            xc, w1c, b1c, wdc, bdc, w2c, b2c = (t.to(dtype) for t in (xn, w1, b1, wd, bd, w2, b2))
            h1 = F.linear(xc, w1c, b1c)
            out = F.linear(_ffn_hidden(h1, wdc, bdc, approximate)[1], w2c, b2c)
        ctx.save_for_backward(x if norm_args else xc, h1, ln_w, ln_b, w1, wd, bd, w2)
        ctx.norm_args, ctx.approximate = norm_args, approximate
        ctx.dtypes = tuple(t.dtype for t in (w1, b1, wd, bd, w2, b2))
        return out

    @staticmethod
    def _norm_again(ctx, x, ln_w, ln_b):
        """The LayerNorm of the forward, recorded: its output and its inputs that want a gradient."""
        leaves = [t.detach().requires_grad_(need) for t, need in zip((x, ln_w, ln_b), ctx.needs_input_grad)]
        with torch.enable_grad(), torch.autocast(x.device.type, ctx.autocast[1], enabled=ctx.autocast[0]):
            xn = F.layer_norm(leaves[0], ctx.norm_args[0], leaves[1], leaves[2], ctx.norm_args[1])
        return xn, [t for t in leaves if t.requires_grad]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, h1, ln_w, ln_b, w1, wd, bd, w2 = ctx.saved_tensors
        xn, leaves = _RecomputedFeedForward._norm_again(ctx, x, ln_w, ln_b) if ctx.norm_args else (x, [])
        xc = xn.detach().to(h1.dtype)
        w1c, wdc, bdc, w2c = (t.to(h1.dtype) for t in (w1, wd, bd, w2))
        need = ctx.needs_input_grad[3:9]  # w1, b1, wd, bd, w2, b2
        g, h2 = _ffn_hidden(h1, wdc, bdc, ctx.approximate)
        grad2d = grad.reshape(-1, grad.shape[-1])
        dw2 = grad2d.t().mm(h2.reshape(-1, h2.shape[-1])) if need[4] else None
        db2 = grad2d.sum(0) if need[5] else None
        del h2
        dh2 = grad.matmul(w2c)  # the gradient of the fc2 input
        # oneDNN's input and weight gradients; the bias one as a plain sum (asked of oneDNN it costs more)
        dg, dwd, _ = torch.ops.aten.convolution_backward(
            dh2.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2), wdc, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
            g.shape[-1], [True, need[2], False])
        dbd = dh2.sum((0, 1, 2)) if need[3] else None
        del g
        dg = dg.permute(0, 2, 3, 1).add_(dh2)
        del dh2
        dh1 = torch.ops.aten.gelu_backward.grad_input(dg, h1, approximate=ctx.approximate, grad_input=dg)
        dh1_2d = dh1.reshape(-1, dh1.shape[-1])
        dw1 = dh1_2d.t().mm(xc.reshape(-1, xc.shape[-1])) if need[0] else None
        db1 = dh1_2d.sum(0) if need[1] else None
        if dwd is not None and dwd.stride() != wd.stride():  # in the weight's layout, as DDP's buckets expect
            dwd = torch.empty_like(wdc).copy_(dwd)
        ffn_grads = tuple(None if d is None else d.to(t) for d, t in zip((dw1, db1, dwd, dbd, dw2, db2), ctx.dtypes))
        norm_grads = [None, None, None]  # x, ln_w, ln_b
        if ctx.norm_args and leaves:
            found = iter(torch.autograd.grad(xn, leaves, dh1.matmul(w1c).to(xn.dtype)))
            norm_grads = [next(found) if need else None for need in ctx.needs_input_grad[:3]]
        elif not ctx.norm_args and ctx.needs_input_grad[0]:
            norm_grads[0] = dh1.matmul(w1c).to(x.dtype)
        return *norm_grads, *ffn_grads, None, None


class FeedForward(nn.Module):
    """``forward(x, norm)``: fc1, GELU, ``y + dwconv3x3(y)``, fc2 of ``norm(x)`` (of ``x`` without a norm).
    ``recompute=True`` keeps for backward 1 of the 3 hidden-width tensors and not the norm's output
    (:class:`_RecomputedFeedForward`; ``norm``'s hooks do not run there); the values are the same."""

    def __init__(self, dim: int, hidden_dim: int, recompute: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.dwconv = DWConv2d(hidden_dim, 3, 1, 1)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.recompute = recompute

    def _recomputed(self, x: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:
        fold = isinstance(norm, nn.LayerNorm) and norm.weight is not None and norm.bias is not None
        if norm is not None and not fold:
            x = norm(x)
        ln_w, ln_b, norm_args = (norm.weight, norm.bias, (norm.normalized_shape, norm.eps)) if fold else \
            (None, None, None)
        conv = self.dwconv.conv
        return _RecomputedFeedForward.apply(x, ln_w, ln_b, self.fc1.weight, self.fc1.bias, conv.weight, conv.bias,
                                            self.fc2.weight, self.fc2.bias, norm_args, self.act.approximate)

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        if self.recompute and records_graph(self, x):
            return self._recomputed(x, norm)
        if norm is not None:
            x = norm(x)
        x = activate(self.act, self.fc1(x))
        x = add_to_fresh(self.dwconv(x), x)
        return self.fc2(x)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int, mode: str, attn_type: str = 'ppma',
                 drop_path: float = 0., layerscale: bool = False, layer_init_values: float = 1e-6,
                 mask_placement: str = 'logits', attn_impl: str = 'auto', ffn_recompute: bool = False):
        super().__init__()
        self.pos = DWConv2d(dim, 3, 1, 1)
        self.retention_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        if attn_type == 'ppma':
            self.retention = PolylinePathAttention(dim, num_heads, mode, mask_placement, attn_impl)
        else:
            self.retention = ManhattanAttention(dim, num_heads, mode, attn_impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = FeedForward(dim, ffn_dim, ffn_recompute)
        self.layerscale = layerscale
        if layerscale:
            self.gamma_1 = nn.Parameter(layer_init_values * torch.ones(1, 1, 1, dim))
            self.gamma_2 = nn.Parameter(layer_init_values * torch.ones(1, 1, 1, dim))

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, decay_masks=None) -> torch.Tensor:
        x = add_to_fresh(self.pos(x), x)
        a = self.retention(self.retention_layer_norm(x), sin, cos, decay_masks)
        if self.layerscale:
            a = self.gamma_1 * a
        x = add_to_fresh(self.drop_path(a), x)
        f = self.ffn(x, self.final_layer_norm)
        if self.layerscale:
            f = self.gamma_2 * f
        return add_to_fresh(self.drop_path(f), x)


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC -> NHWC, contiguous (see PatchEmbed.forward)
        # the conv input NCHW in memory as in the official code (channels-last in a channels-last model), so that
        # the conv rounds as the official one
        x = self.reduction(x.permute(0, 3, 1, 2).contiguous(memory_format=weight_memory_format(self.reduction)))
        return self.norm(x).permute(0, 2, 3, 1).contiguous()


class Stage(nn.Module):
    def __init__(self, dim: int, out_dim: int | None, depth: int, num_heads: int, ffn_dim: int, mode: str,
                 attn_type: str, drop_path: Sequence[float], layerscale: bool, layer_init_values: float,
                 init_value: float, heads_range: float, mask_placement: str, attn_impl: str,
                 ffn_recompute: bool = False):
        super().__init__()
        self.dim = dim
        self.attn_impl = attn_impl
        self.full_attention = mode == 'full'
        self.grad_checkpointing = False
        self.Relpos = RotaryPositionEmbedding2D(dim, num_heads, init_value, heads_range, decay=attn_type == 'rmt')
        self.blocks = nn.ModuleList([
            Block(dim, num_heads, ffn_dim, mode, attn_type, drop_path[i], layerscale, layer_init_values,
                  mask_placement, attn_impl, ffn_recompute)
            for i in range(depth)])
        self.downsample = PatchMerging(dim, out_dim) if out_dim is not None else None

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1], x.shape[2]
        sin, cos = self.Relpos(h, w)
        decay_masks = None
        if self.Relpos.decay is not None:  # RMT: masks shared by the blocks, only where the kernel path uses them
            masks = None
            if masks_needed(x, _manhattan_impl(self.attn_impl)):
                masks = self.Relpos.manhattan_masks(h, w, self.full_attention)
            decay_masks = (self.Relpos.decay, masks)
        for blk in self.blocks:
            x = run_block(blk, x, sin, cos, decay_masks, checkpointed=self.grad_checkpointing)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, dim // 2, 3, 2, 1), nn.BatchNorm2d(dim // 2), FreshActivation(nn.GELU()),
            nn.Conv2d(dim // 2, dim // 2, 3, 1, 1), nn.BatchNorm2d(dim // 2), FreshActivation(nn.GELU()),
            nn.Conv2d(dim // 2, dim, 3, 2, 1), nn.BatchNorm2d(dim), FreshActivation(nn.GELU()),
            nn.Conv2d(dim, dim, 3, 1, 1), nn.BatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The token stream is (B, H, W, C) in memory too (the official one is NCHW memory seen as NHWC, which
        # every LayerNorm copies, forward and backward): one copy here and per PatchMerging instead, none in a
        # channels-last model. Outputs and gradients are bit for bit the same (the convs keep their input layouts).
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


# ---------------------------------------------------------------------------------------------- model
class PPMAViT(nn.Module):
    """PPMA / RMT hierarchical backbone.

    Args:
        attn_type: ``'ppma'`` (learned polyline mask) or ``'rmt'`` (fixed Manhattan decay).
        chunkwise_recurrents: per stage, True -> criss-cross (decomposed) attention, False -> full attention.
        mask_placement: PPMA mask ablation, ``'logits'`` (official) or ``'post_softmax'``.
        attn_impl: attention kernel path, ``'auto' | 'torch' | 'cpp' | 'triton' | 'reference'`` (RMT has no
            Triton kernel: ``'triton'`` runs its ``'torch'`` path).
        out_norm: add the downstream backbone's output LayerNorms ``outnorm{i}`` (eps 1e-5).
        ffn_recompute: every FFN keeps for backward only its input and fc1 output, and runs its LayerNorm, GELU
            and 3x3 depthwise conv again there (``FeedForward(recompute=True)``): the same outputs and gradients
            (the conv's bias gradient within fp32 rounding) for up to 5 % more time on CPU; an RMT-T training
            step at 800x1344 peaks at 1677 instead of 2279 MiB of the allocator.
        init_values, heads_ranges: RMT decay parameters (stored but unused by PPMA, as in the official code).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            embed_dims: Sequence[int] = (64, 128, 256, 512),
            depths: Sequence[int] = (2, 2, 8, 2),
            num_heads: Sequence[int] = (4, 4, 8, 16),
            init_values: Sequence[float] = (2, 2, 2, 2),
            heads_ranges: Sequence[float] = (4, 4, 6, 6),
            mlp_ratios: Sequence[float] = (3, 3, 3, 3),
            chunkwise_recurrents: Sequence[bool] = (True, True, False, False),
            layerscales: Sequence[bool] = (False, False, False, False),
            layer_init_values: float = 1e-6,
            projection: int = 1024,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            attn_type: str = 'ppma',
            mask_placement: str = 'logits',
            attn_impl: str = 'auto',
            out_norm: bool = False,
            ffn_recompute: bool = False,
            global_pool: str = 'avg',
    ):
        super().__init__()
        if attn_type not in ('ppma', 'rmt'):
            raise ValueError(f"attn_type must be 'ppma' or 'rmt', got {attn_type!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.attn_type = attn_type
        self.embed_dims = tuple(embed_dims)
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = projection
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.layers = nn.ModuleList()
        self.feature_info = []
        for i in range(len(depths)):
            self.layers.append(Stage(
                embed_dims[i], embed_dims[i + 1] if i < len(depths) - 1 else None, depths[i], num_heads[i],
                int(mlp_ratios[i] * embed_dims[i]), 'criss_cross' if chunkwise_recurrents[i] else 'full',
                attn_type, dpr[sum(depths[:i]):sum(depths[:i + 1])], layerscales[i], layer_init_values,
                init_values[i], heads_ranges[i], mask_placement, attn_impl, ffn_recompute))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f'layers.{i}'))
        self.out_norm = out_norm
        if out_norm:
            for i in range(len(depths)):
                self.add_module(f'outnorm{i}', nn.LayerNorm(embed_dims[i]))
        self.proj = nn.Linear(embed_dims[-1], projection)
        self.norm = nn.BatchNorm2d(projection)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(projection, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights_trunc_normal)

    # ------------------------------------------------------------------ timm API
    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r'^patch_embed',
            blocks=r'^layers\.(\d+)' if coarse else [
                (r'^layers\.(\d+)\.downsample', (0,)),
                (r'^layers\.(\d+)\.blocks\.(\d+)', None),
                (r'^outnorm(\d+)', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool | str = True):
        enable = grad_checkpointing_mode(enable)
        for s in self.layers:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        check_global_pool(type(self).__name__, global_pool, ('avg',))  # the head always average-pools
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = linear_head(self.num_features, num_classes)

    def load_pretrained(self, path, checkpoint_key: str | None = None):
        """Loads an official (or our own) checkpoint file; mismatches raise CheckpointMismatchError."""
        load_checkpoint(self, path, checkpoint_filter_fn, checkpoint_key=checkpoint_key)

    # ------------------------------------------------------------------ forward
    def _to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, H, W, C) stage output (also the last one, ``forward_features``) as NCHW in the model's layout:
        contiguous like the official backbone's outputs (so that a neck's convs take the same algorithms and
        round the same), channels-last memory in a channels-last model."""
        return x.permute(0, 3, 1, 2).contiguous(memory_format=weight_memory_format(self.patch_embed.proj[0]))

    def _check_input(self, x: torch.Tensor):
        check_image_batch(type(self).__name__, x, self.in_chans, MIN_INPUT_SIZE,
                          "the stride-32 stage needs at least one token",
                          weight_dtype=next(self.parameters()).dtype)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: int | list[int] | None = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs before downsampling (strides 4, 8, 16, 32; channels ``embed_dims``), NCHW or NHWC.
        With ``out_norm=True`` each goes through ``outnorm{i}`` (official downstream backbone). The final
        output (when not ``intermediates_only``) is the last stage output, NCHW."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        last = max_index if stop_early or intermediates_only else len(self.layers) - 1
        x = self.patch_embed(x)
        intermediates = []
        for i in range(last + 1):
            stage = self.layers[i]
            x = stage.forward_blocks(x)
            if i in take_indices:
                y = getattr(self, f'outnorm{i}')(x) if self.out_norm else x
                intermediates.append(self._to_nchw(y) if output_fmt == 'NCHW' else y)
            if stage.downsample is not None and i < last:
                x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return self._to_nchw(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: int | list[int] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        """Drops the stages after the last requested one (and the classifier head)."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        self.layers[-1].downsample = None
        if self.out_norm:
            for i in range(max_index + 1, len(self.feature_info)):
                if hasattr(self, f'outnorm{i}'):
                    delattr(self, f'outnorm{i}')
        if prune_head or max_index < len(self.feature_info) - 1:
            self.proj = nn.Identity()
            self.norm = nn.Identity()
            self.num_features = self.head_hidden_size = self.embed_dims[max_index]
            self.reset_classifier(0)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last stage output, NCHW (B, embed_dims[-1], ceil(H/32), ceil(W/32))."""
        self._check_input(x)
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage.forward_blocks(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return self._to_nchw(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.proj(x.permute(0, 2, 3, 1))  # (B, h, w, 1024)
        x = self.norm(x.permute(0, 3, 1, 2)).flatten(2)  # (B, 1024, h*w)
        x = x * torch.sigmoid(x)
        x = self.avgpool(x).flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------- FLOPs
def flop_count_handles() -> dict:
    """fvcore op handles for the polyline-path attention ops (full and criss-cross)."""
    return dict(FVCORE_OP_HANDLES)


# ---------------------------------------------------------------------------------------------- checkpoints
_HEAD_PREFIXES = ('proj.', 'norm.', 'head.')


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Maps an official PPMA/RMT checkpoint (classification ``PPMAViT``/``VisRetNet`` or downstream
    ``Backbone_PPMAViT``/``Backbone_VisRetNet`` layout) onto this model. Our keys equal the official ones, so
    this is the identity on the keys, plus, for models built with ``out_norm=True``:

    - a classification checkpoint (no ``outnorm{i}`` keys) keeps the model's freshly initialised output norms
      (what the official backbone loader does with ``strict=False``);
    - a backbone checkpoint (no ``proj``/``norm``/``head`` keys) loaded into a headless model (``features_only``
      prunes the pre-head layers after loading) keeps the model's own pre-head weights. A model with a
      classifier reports them missing: no random head is left behind silently.

    Those keys are named in the returned :class:`FilteredState`'s ``keep_init``; the loader reports them.

    Anything else that does not fit raises ``CheckpointMismatchError`` in the loader.
    """
    out = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    keep = []
    if getattr(model, 'out_norm', False):
        own = model.state_dict()
        if not any(k.startswith('outnorm') for k in out):
            keep += [k for k in own if k.startswith('outnorm')]
        if model.num_classes == 0 and not any(k.startswith(_HEAD_PREFIXES) for k in out):
            keep += [k for k in own if k.startswith(_HEAD_PREFIXES)]
    return FilteredState(out, keep_init=keep)


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'min_input_size': (3, MIN_INPUT_SIZE, MIN_INPUT_SIZE),
        'pool_size': (7, 7), 'crop_pct': 0.875, 'interpolation': 'bicubic',  # resize 256 bicubic, crop 224
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj.0', 'classifier': 'head',
        'custom_load': True, 'license': 'apache-2.0',
        **kwargs,
    }


_PPMA = dict(paper_ids='arXiv:2506.15940', origin_url='https://github.com/zhongchenzhao/PPMA')
_RMT = dict(paper_ids='arXiv:2309.11523', origin_url='https://github.com/qhfan/RMT')

default_cfgs = generate_default_cfgs({
    'ppma_tiny.in1k': _cfg(**_PPMA),
    'ppma_small.in1k': _cfg(**_PPMA),
    'ppma_base.in1k': _cfg(**_PPMA),
    'rmt_tiny.in1k': _cfg(**_RMT),
    'rmt_small.in1k': _cfg(**_RMT),
    'rmt_base.in1k': _cfg(**_RMT),
})

_ARCHS = {
    'tiny': dict(embed_dims=(64, 128, 256, 512), depths=(2, 2, 8, 2), num_heads=(4, 4, 8, 16),
                 init_values=(2, 2, 2, 2), heads_ranges=(4, 4, 6, 6), mlp_ratios=(3, 3, 3, 3),
                 chunkwise_recurrents=(True, True, False, False), layerscales=(False, False, False, False),
                 drop_path_rate=0.1),
    'small': dict(embed_dims=(64, 128, 256, 512), depths=(3, 4, 18, 4), num_heads=(4, 4, 8, 16),
                  init_values=(2, 2, 2, 2), heads_ranges=(4, 4, 6, 6), mlp_ratios=(4, 4, 3, 3),
                  chunkwise_recurrents=(True, True, True, False), layerscales=(False, False, False, False),
                  drop_path_rate=0.15),
    'base': dict(embed_dims=(80, 160, 320, 512), depths=(4, 8, 25, 8), num_heads=(5, 5, 10, 16),
                 init_values=(2, 2, 2, 2), heads_ranges=(5, 5, 6, 6), mlp_ratios=(4, 4, 3, 3),
                 chunkwise_recurrents=(True, True, True, False), layerscales=(False, False, True, True),
                 layer_init_values=1e-6, drop_path_rate=0.4),
}


def _create(variant: str, pretrained: bool = False, **kwargs) -> PPMAViT:
    return build_model(PPMAViT, variant, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def ppma_tiny(pretrained=False, **kwargs) -> PPMAViT:
    return _create('ppma_tiny', pretrained, **dict(_ARCHS['tiny'], attn_type='ppma', **kwargs))


@register_model
def ppma_small(pretrained=False, **kwargs) -> PPMAViT:
    return _create('ppma_small', pretrained, **dict(_ARCHS['small'], attn_type='ppma', **kwargs))


@register_model
def ppma_base(pretrained=False, **kwargs) -> PPMAViT:
    return _create('ppma_base', pretrained, **dict(_ARCHS['base'], attn_type='ppma', **kwargs))


@register_model
def rmt_tiny(pretrained=False, **kwargs) -> PPMAViT:
    return _create('rmt_tiny', pretrained, **dict(_ARCHS['tiny'], attn_type='rmt', **kwargs))


@register_model
def rmt_small(pretrained=False, **kwargs) -> PPMAViT:
    return _create('rmt_small', pretrained, **dict(_ARCHS['small'], attn_type='rmt', **kwargs))


@register_model
def rmt_base(pretrained=False, **kwargs) -> PPMAViT:
    return _create('rmt_base', pretrained, **dict(_ARCHS['base'], attn_type='rmt', **kwargs))
