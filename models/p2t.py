"""P2T: Pyramid Pooling Transformer.

Paper: `P2T: Pyramid Pooling Transformer for Scene Understanding` (Wu, Liu, Zhan, Cheng; TPAMI 2022).
Official code: https://github.com/yuhuan-wu/P2T (CC BY-NC-SA 4.0). This file is an independent
reimplementation on torch + timm; it loads the official classification checkpoints as published.

Architecture (all variants):

- four stages at strides 4, 8, 16, 32. Each stage starts with an overlapping patch embedding (conv
  k7 s4 p3 for stage 1, k3 s2 p1 afterwards; conv with bias, then LayerNorm eps 1e-5 on the tokens);
- blocks are pre-norm (LayerNorm eps 1e-6): ``x + DropPath(PoolingAttention(LN1(x)))`` then
  ``x + DropPath(IRB(LN2(x)))``;
- pooling attention: queries come from every token; keys/values come from a pyramid of adaptive average
  pools of the block input with output sizes ``(round(H / r), round(W / r))`` for the stage's four ratios
  (Python's ``round``, i.e. round-half-to-even, exactly as the official code). Each pooled map gets a
  residual 3x3 depthwise conv, ``P + DWConv(P)``; these four convs belong to the *stage* and are shared by
  all of its blocks. The pooled tokens are concatenated, LayerNorm-ed (eps 1e-5) and projected to k, v;
  then plain multi-head attention (scale ``head_dim ** -0.5``) and an output projection;
- FFN is an inverted residual block on the token grid: 1x1 conv, Hardswish, 3x3 depthwise conv, Hardswish,
  1x1 conv;
- no norm at the end of a stage or before the head; the classifier is a Linear on the token mean of the
  last stage.

The smallest input the pooling pyramid accepts is 65x65 (stage 4 is ``ceil(H / 32)`` wide and ratio 4
needs ``round(h / 4) >= 1``); smaller inputs raise ``ValueError`` naming the minimum size.

Checkpoints: the official key layout (``patch_embed{s}.*``, ``d_convs{s}.{i}.*``, ``block{s}.{j}.*`` with
``attn.q.0`` / ``attn.kv.0``, ``head.*``), in the containers the official ``main.py`` writes
(``{'model': state_dict, 'optimizer': ..., 'args': Namespace, ...}`` for ``checkpoint.pth``, a bare state
dict for ``best_model.pth``), is mapped by :func:`checkpoint_filter_fn` onto this module layout::

    patch_embed{s}.X      -> stages.{s-1}.patch_embed.X
    d_convs{s}.{i}.X      -> stages.{s-1}.pool_convs.{i}.X
    block{s}.{j}.attn.q.0 -> stages.{s-1}.blocks.{j}.attn.q     (same for attn.kv.0 -> attn.kv)
    block{s}.{j}.X        -> stages.{s-1}.blocks.{j}.X
    head.X                -> head.X

Differences from the official classification code (none changes the eval outputs of official weights):

- ``drop_path_rate`` defaults to the official per-variant training value (0.1 / 0.1 / 0.3 / 0.3); the
  official factories leave the constructor default (0.1) and rely on ``main.py --drop-path``.
- ``drop_rate`` is a dropout on the pooled features before ``head``; ``attn_drop_rate`` / ``proj_drop_rate``
  are applied in the attention. The official code builds these dropouts but never applies them; all
  default to 0, where both are identical.
- official ``reset_classifier`` references a non-existent ``self.embed_dim`` (crashes); fixed here.
- official ``no_weight_decay`` returns ``{'cls_token'}``, a parameter that does not exist; here it returns
  an empty set (same effect).
- attention uses ``F.scaled_dot_product_attention`` where it pays (``kernels.fused_attention``: on GPUs; on CPU
  only with many keys, which P2T's pooled keys never are) and the equivalent explicit
  ``softmax(q k^T * scale) v`` otherwise, and while being traced with ``torch.jit.trace`` (fvcore, TorchScript
  export) so that jit-based FLOP counters see the two matmuls (they do not count the fused op).
- in training mode the IRB runs as one autograd function (:class:`_IRBFunction`, ``ffn_buffer_reuse=True``):
  the module's ops and values bit for bit, fewer fresh and saved tensors; its backward runs once per graph
  (``ffn_buffer_reuse=False`` for ``retain_graph=True`` or double backward).
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, use_fused_attn
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import adapt_input_conv

from kernels.elementwise_into import hardswish_backward_
from kernels.fused_attention import fused_attention_pays

from ._builder import build_model
from ._layers import (
    activate, add_to_fresh, channels_last_weights, check_global_pool, check_image_batch, grad_checkpointing_mode,
    init_weights_trunc_normal, linear_head, records_graph, run_block)
from ._checkpoint import extract_state_dict, load_checkpoint

__all__ = ["PyramidPoolingTransformer", "PoolingAttention", "P2TBlock", "checkpoint_filter_fn"]

# Official pooling ratios of the four stages (identical for all variants).
DEFAULT_POOL_RATIOS = ((12, 16, 20, 24), (6, 8, 10, 12), (3, 4, 5, 6), (1, 2, 3, 4))
# (kernel, stride, padding) of the patch embedding convs of the four stages.
_EMBED_GEOMETRY = ((7, 4, 3), (3, 2, 1), (3, 2, 1), (3, 2, 1))


def pooled_sizes(height: int, width: int, pool_ratios: Sequence[int]) -> List[Tuple[int, int]]:
    """Output sizes of the pyramid pools, with Python's round-half-to-even as in the official code."""
    height, width = int(height), int(width)  # sizes are 0-dim tensors under torch.jit.trace
    return [(round(height / r), round(width / r)) for r in pool_ratios]


def _min_grid_side(pool_ratios: Sequence[int]) -> int:
    """Smallest token-grid side whose pooled sizes are all >= 1."""
    return next(h for h in range(1, 4 * max(pool_ratios) + 2) if all(round(h / r) >= 1 for r in pool_ratios))


def _stage_sizes(size: int, num_stages: int) -> List[int]:
    """Side length of every stage's token grid for an input side ``size``."""
    out = []
    for kernel, stride, pad in _EMBED_GEOMETRY[:num_stages]:
        size = (size + 2 * pad - kernel) // stride + 1
        out.append(size)
    return out


def _side_ok(size: int, pool_ratios: Sequence[Sequence[int]]) -> bool:
    if size < 1:
        return False
    stage_sizes = _stage_sizes(size, len(pool_ratios))
    return all(s >= 1 and min(round(s / r) for r in ratios) >= 1 for s, ratios in zip(stage_sizes, pool_ratios))


def min_input_size(pool_ratios: Sequence[Sequence[int]] = DEFAULT_POOL_RATIOS) -> int:
    """Smallest input side (px) for which every pooled grid of every stage is non-empty (65 for P2T)."""
    for size in range(1, 1 << 16):  # validity is monotone in the input side
        if _side_ok(size, pool_ratios):
            return size
    raise ValueError(f"no input size satisfies pooling ratios {pool_ratios}")


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: conv (with bias) then LayerNorm over channels. NCHW in, NHWC out."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(out_chs)  # eps 1e-5 as in the official code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PoolingAttention(nn.Module):
    """Multi-head attention whose keys/values come from pyramid-pooled tokens.

    ``forward(x, pool_convs)`` takes NHWC tokens and the stage's shared depthwise convs (one per ratio).
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            pool_ratios: Sequence[int] = DEFAULT_POOL_RATIOS[0],
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.pool_ratios = tuple(pool_ratios)
        self.fused_attn = use_fused_attn()

        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.norm = nn.LayerNorm(dim)  # pooled-token norm, eps 1e-5 as in the official code
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, pool_convs: Sequence[nn.Module]) -> torch.Tensor:
        B, H, W, C = x.shape
        H, W = int(H), int(W)
        sizes = pooled_sizes(H, W, self.pool_ratios)
        for (ph, pw), r in zip(sizes, self.pool_ratios):
            if ph < 1 or pw < 1:
                raise ValueError(
                    f"P2T pooling attention: a {H}x{W} token grid is too small for pooling ratio {r} "
                    f"(pooled size round({H}/{r}) x round({W}/{r}) = {ph}x{pw}); the grid needs at least "
                    f"{_min_grid_side(self.pool_ratios)} tokens per side"
                )
        q = self.q(x).reshape(B, H * W, self.num_heads, self.head_dim).transpose(1, 2)

        grid = x.permute(0, 3, 1, 2)
        pooled = []
        for size, conv in zip(sizes, pool_convs):
            p = F.adaptive_avg_pool2d(grid, size)
            p = p + conv(p)
            pooled.append(p.flatten(2))
        kv_in = self.norm(torch.cat(pooled, dim=2).transpose(1, 2))  # (B, M, C)
        k, v = self.kv(kv_in).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

        if self.fused_attn and not torch.jit.is_tracing() and fused_attention_pays(q, k.shape[-2]):
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # the official order
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, H, W, C)
        return self.proj_drop(self.proj(x))


class _IRBFunction(torch.autograd.Function):
    """:class:`IRB` for training with fewer fresh hidden-width tensors: the second Hardswish is written into the
    first one's output, the backward computes the Hardswish gradients in place (in pieces, see
    ``kernels.elementwise_into``) and recomputes the depthwise conv's input into a spent saved tensor. A fresh
    tensor of that size costs page faults on the CPU under glibc's defaults: P2T-T's stage-1 IRB at 224^2, batch
    8, makes five 38.5 MB tensors instead of eight and keeps three for the backward instead of four. Every op is
    the module's, and the convolutions' gradients are oneDNN's as autograd takes them: the outputs and gradients
    are the module's bit for bit.

    The backward runs once per forward: it overwrites what it saved, so in training mode a second backward
    through the same graph (``retain_graph=True``) and double backward raise, naming ``ffn_buffer_reuse=False``,
    which builds the model without it."""

    @staticmethod
    def forward(ctx, x, w1, b1, wd, bd, w2, b2):
        h1 = _tokens(F.conv2d(_nchw(x), w1, b1))
        a = F.hardswish(h1)
        h2 = _tokens(F.conv2d(_nchw(a), wd, bd, 1, wd.shape[-1] // 2, 1, wd.shape[0]))
        torch.ops.aten.hardswish.out(h2, out=a)
        ctx.save_for_backward(x, h1, h2, a, w1, wd, w2)
        ctx.spent = False
        return F.conv2d(_nchw(a), w2, b2).permute(0, 2, 3, 1)

    @staticmethod
    def backward(ctx, grad):
        if ctx.spent or torch.is_grad_enabled():
            this = "a second backward (retain_graph=True)" if ctx.spent else "double backward (create_graph=True)"
            raise RuntimeError(
                "models/p2t.py: the IRB's backward runs once per forward and is not differentiable (it reuses the "
                f"memory it saved); this is {this}. Build the model with ffn_buffer_reuse=False for that.")
        ctx.spent = True
        x, h1, h2, a, w1, wd, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_wd, need_bd, need_w2, need_b2 = ctx.needs_input_grad
        # oneDNN's gradients as autograd takes them; the activations' in place, in pieces
        da2, dw2, db2 = _conv_backward(_nchw(grad), _nchw(a), w2, 0, [True, need_w2, need_b2])
        dh2 = hardswish_backward_(_tokens(da2), h2)
        a1 = torch.ops.aten.hardswish.out(h1, out=a)  # the depthwise conv's input again, into a: spent
        da1, dwd, dbd = _conv_backward(_nchw(dh2), _nchw(a1), wd, wd.shape[-1] // 2, [True, need_wd, need_bd],
                                       wd.shape[0])
        dh1 = hardswish_backward_(_tokens(da1), h1)
        dx = dw1 = db1 = None
        if need_x or need_w1 or need_b1:
            dx, dw1, db1 = _conv_backward(_nchw(dh1), _nchw(x), w1, 0, [need_x, need_w1, need_b1])
        return None if dx is None else dx.permute(0, 2, 3, 1), dw1, db1, dwd, dbd, dw2, db2


def _nchw(t: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) tokens as the (B, C, H, W) channels-last view the convolutions take."""
    return t.permute(0, 3, 1, 2)


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """A convolution's (B, C, H, W) result as contiguous (B, H, W, C) tokens: a view, as oneDNN keeps the
    channels-last layout of its channels-last inputs."""
    return t.permute(0, 2, 3, 1).contiguous()


def _conv_backward(grad, inp, weight, padding: int, output_mask, groups: int = 1):
    """The gradients of a stride-1 convolution, as autograd takes them (oneDNN's on the CPU)."""
    return torch.ops.aten.convolution_backward(
        grad, inp, weight, [weight.shape[0]], [1, 1], [padding, padding], [1, 1], False, [0, 0], groups,
        output_mask)


class IRB(nn.Module):
    """Inverted residual FFN on the token grid: 1x1 conv, Hardswish, DW 3x3 conv, Hardswish, 1x1 conv.

    ``buffer_reuse=True``: in training mode with a gradient recorded (and no autocast, ``torch.compile``,
    ``torch.func`` transform or jit trace) it runs as :class:`_IRBFunction` (the same outputs and gradients,
    fewer fresh tensors; ``act``'s hooks do not run there). In eval mode (saliency maps, gradient analysis)
    gradients always come from the module's ops."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 3, act_layer=nn.Hardswish,
                 buffer_reuse: bool = True):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = act_layer()
        self.conv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2, groups=hidden_dim)
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)
        self.buffer_reuse = buffer_reuse
        channels_last_weights(self)  # the input is always a permuted (B, H, W, C) tensor

    def _reuses_buffers(self, x: torch.Tensor) -> bool:
        # autocast casts per op, torch.compile plans memory itself, and torch.func's transforms (grad, vmap)
        # differentiate the ops they see: the module's ops there
        return (self.buffer_reuse and self.training and type(self.act) is nn.Hardswish and records_graph(self, x)
                and not torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active()
                and not torch.is_autocast_enabled(x.device.type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC -> NHWC
        if self._reuses_buffers(x):
            return _IRBFunction.apply(x, self.fc1.weight, self.fc1.bias, self.conv.weight, self.conv.bias,
                                      self.fc2.weight, self.fc2.bias)
        x = x.permute(0, 3, 1, 2)
        x = activate(self.act, self.fc1(x))
        x = activate(self.act, self.conv(x))
        x = self.fc2(x)
        return x.permute(0, 2, 3, 1)


class P2TBlock(nn.Module):
    """Pre-norm block: pooling attention and IRB, each with a residual and drop path. NHWC in and out."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float,
            pool_ratios: Sequence[int],
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            norm_eps: float = 1e-6,
            ffn_buffer_reuse: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = PoolingAttention(
            dim, num_heads, pool_ratios, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = IRB(dim, int(dim * mlp_ratio), buffer_reuse=ffn_buffer_reuse)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor, pool_convs: Sequence[nn.Module]) -> torch.Tensor:
        x = add_to_fresh(self.drop_path(self.attn(self.norm1(x), pool_convs)), x)
        x = add_to_fresh(self.drop_path(self.mlp(self.norm2(x))), x)
        return x


class P2TStage(nn.Module):
    """Patch embedding, the stage's shared pooling convs, and its blocks. NCHW in and out."""

    def __init__(
            self,
            in_chs: int,
            dim: int,
            depth: int,
            num_heads: int,
            mlp_ratio: float,
            pool_ratios: Sequence[int],
            embed_geometry: Tuple[int, int, int],
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            drop_path: Union[float, Sequence[float]] = 0.,
            ffn_buffer_reuse: bool = True,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(in_chs, dim, *embed_geometry)
        # one residual depthwise conv per pooling ratio, shared by all blocks of the stage
        self.pool_convs = nn.ModuleList([nn.Conv2d(dim, dim, 3, padding=1, groups=dim) for _ in pool_ratios])
        channels_last_weights(self.pool_convs)  # they convolve pooled maps of the permuted (B, H, W, C) tokens
        self.blocks = nn.ModuleList([
            P2TBlock(
                dim, num_heads, mlp_ratio, pool_ratios, qkv_bias=qkv_bias, attn_drop=attn_drop,
                proj_drop=proj_drop, drop_path=drop_path[j] if isinstance(drop_path, (list, tuple)) else drop_path,
                ffn_buffer_reuse=ffn_buffer_reuse)
            for j in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = run_block(blk, x, self.pool_convs, checkpointed=self.grad_checkpointing)
        return x.permute(0, 3, 1, 2)


class PyramidPoolingTransformer(nn.Module):
    """P2T backbone / classifier.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: no classifier).
        global_pool: ``'avg'`` (token mean, official) or ``''`` (no pooling in ``forward_head``).
        embed_dims, depths, num_heads, mlp_ratios: per-stage widths, depths, heads and IRB expansions.
        pool_ratios: per-stage pooling ratios (four stages, one shared depthwise conv per ratio).
        qkv_bias: bias in the q and kv projections (official: True).
        drop_rate: dropout before the classifier (official: unused, 0).
        attn_drop_rate, proj_drop_rate: attention dropouts (official: built but never applied, 0).
        drop_path_rate: stochastic depth, linear from 0 over all blocks.
        ffn_buffer_reuse: train the IRBs through :class:`_IRBFunction` (the same values, 18 % fewer saved
            activations for P2T-T, and under glibc's default allocator settings fewer page faults); False for
            ``retain_graph=True`` or double backward in training mode, which its backward does not support.
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dims: Sequence[int] = (64, 128, 320, 512),
            depths: Sequence[int] = (2, 2, 9, 3),
            num_heads: Sequence[int] = (1, 2, 5, 8),
            mlp_ratios: Sequence[float] = (8, 8, 4, 4),
            pool_ratios: Sequence[Sequence[int]] = DEFAULT_POOL_RATIOS,
            qkv_bias: bool = True,
            drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            ffn_buffer_reuse: bool = True,
    ):
        super().__init__()
        num_stages = len(depths)
        if not (len(embed_dims) == len(num_heads) == len(mlp_ratios) == len(pool_ratios) == num_stages == 4):
            raise ValueError("P2T needs four stages: embed_dims, depths, num_heads, mlp_ratios and pool_ratios "
                             "must all have length 4")
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.embed_dims = tuple(embed_dims)
        self.pool_ratios = tuple(tuple(r) for r in pool_ratios)

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()  # works on meta too
        stages = []
        self.feature_info = []
        in_chs, cur, reduction = in_chans, 0, 1
        for i in range(num_stages):
            reduction *= _EMBED_GEOMETRY[i][1]
            stages.append(P2TStage(
                in_chs, embed_dims[i], depths[i], num_heads[i], mlp_ratios[i], self.pool_ratios[i],
                _EMBED_GEOMETRY[i], qkv_bias=qkv_bias, attn_drop=attn_drop_rate, proj_drop=proj_drop_rate,
                drop_path=dpr[cur:cur + depths[i]], ffn_buffer_reuse=ffn_buffer_reuse))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=reduction, module=f'stages.{i}'))
            in_chs = embed_dims[i]
            cur += depths[i]
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        self.apply(init_weights_trunc_normal)

    # ------------------------------------------------------------------ timm API
    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r'^stages\.0\.patch_embed',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.(?:patch_embed|pool_convs)', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool | str = True):
        enable = grad_checkpointing_mode(enable)
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        check_global_pool("P2T", global_pool, ('avg', ''))
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = linear_head(self.num_features, num_classes)

    def load_pretrained(self, path, checkpoint_key: Optional[str] = None):
        """Loads an official (or our own) checkpoint file; mismatches raise CheckpointMismatchError."""
        load_checkpoint(self, path, checkpoint_filter_fn, checkpoint_key=checkpoint_key)

    # ------------------------------------------------------------------ forward
    def min_input_size(self) -> int:
        """Smallest input side (px) accepted by the stages this model has (65 with all four stages)."""
        return min_input_size(self.pool_ratios[:len(self.stages)])

    def _check_input(self, x: torch.Tensor):
        check_image_batch("P2T", x, self.in_chans, weight_dtype=next(self.parameters()).dtype)
        H, W = int(x.shape[-2]), int(x.shape[-1])
        pool_ratios = self.pool_ratios[:len(self.stages)]
        if not (_side_ok(H, pool_ratios) and _side_ok(W, pool_ratios)):
            raise ValueError(
                f"P2T input {H}x{W} is too small: height and width must be >= {self.min_input_size()} px so "
                f"that every pyramid pool (sizes round(h / r) per stage, ratios {pool_ratios}) is non-empty")

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (strides 4, 8, 16, 32; channels ``embed_dims``). P2T has no output norm, so
        ``norm`` has no effect."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x if output_fmt == 'NCHW' else x.permute(0, 2, 3, 1))
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        """Drops the stages after the last requested one (and the classifier)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last stage output, NCHW (B, embed_dims[-1], H/32, W/32) (rounded up)."""
        self._check_input(x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))  # token mean of the raw last-stage output, no final norm (official)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------- checkpoints
_OFFICIAL_PATTERNS = (
    (re.compile(r'^patch_embed([1-4])\.'), 'patch_embed'),
    (re.compile(r'^d_convs([1-4])\.'), 'pool_convs'),
    (re.compile(r'^block([1-4])\.'), 'blocks'),
)


def _map_official_key(k: str) -> str:
    for pattern, ours in _OFFICIAL_PATTERNS:
        m = pattern.match(k)
        if m:
            k = f'stages.{int(m.group(1)) - 1}.{ours}.' + k[m.end():]
            break
    if k.startswith('stages.'):
        k = re.sub(r'\.attn\.(q|kv)\.0\.', r'.attn.\1.', k)
    return k


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Maps an official P2T state dict (or ours, unchanged) onto ``model``'s keys.

    Also unwraps the official containers (``{'model': ...}`` from ``main.py``, ``module.`` prefixes), so it
    works on timm's generic loading path too. Validation (missing / unexpected / mis-shaped keys, the
    classifier) is done by the loader, ``models._checkpoint``. An input conv for a different ``in_chans``
    is adapted with timm's ``adapt_input_conv``.
    """
    out = {_map_official_key(k): v for k, v in extract_state_dict(state_dict).items()}
    own = model.state_dict()
    first = 'stages.0.patch_embed.proj.weight'
    if first in out and first in own and out[first].ndim == 4 and out[first].shape[1] != own[first].shape[1]:
        out[first] = adapt_input_conv(own[first].shape[1], out[first], base_chans=out[first].shape[1])
    return out


# ---------------------------------------------------------------------- registry
def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'min_input_size': (3, 65, 65), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',  # official eval: resize 256 (bicubic), center crop 224
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stages.0.patch_embed.proj', 'classifier': 'head',
        'custom_load': True, 'license': 'cc-by-nc-sa-4.0',
        'origin_url': 'https://github.com/yuhuan-wu/P2T',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'p2t_tiny.in1k': _cfg(),
    'p2t_small.in1k': _cfg(),
    'p2t_base.in1k': _cfg(),
    'p2t_large.in1k': _cfg(),
})


def _create_p2t(variant: str, pretrained: bool = False, **kwargs) -> PyramidPoolingTransformer:
    return build_model(PyramidPoolingTransformer, variant, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def p2t_tiny(pretrained=False, **kwargs) -> PyramidPoolingTransformer:
    model_args = dict(embed_dims=(48, 96, 240, 384), depths=(2, 2, 6, 3), num_heads=(1, 2, 5, 8),
                      mlp_ratios=(8, 8, 4, 4), drop_path_rate=0.1)
    return _create_p2t('p2t_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def p2t_small(pretrained=False, **kwargs) -> PyramidPoolingTransformer:
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 9, 3), num_heads=(1, 2, 5, 8),
                      mlp_ratios=(8, 8, 4, 4), drop_path_rate=0.1)
    return _create_p2t('p2t_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def p2t_base(pretrained=False, **kwargs) -> PyramidPoolingTransformer:
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), num_heads=(1, 2, 5, 8),
                      mlp_ratios=(8, 8, 4, 4), drop_path_rate=0.3)
    return _create_p2t('p2t_base', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def p2t_large(pretrained=False, **kwargs) -> PyramidPoolingTransformer:
    model_args = dict(embed_dims=(64, 128, 320, 640), depths=(3, 8, 27, 3), num_heads=(1, 2, 5, 8),
                      mlp_ratios=(8, 8, 4, 4), drop_path_rate=0.3)
    return _create_p2t('p2t_large', pretrained=pretrained, **dict(model_args, **kwargs))
