"""MPViT: Multi-Path Vision Transformer for Dense Prediction.

Paper: `MPViT: Multi-Path Vision Transformer for Dense Prediction` (Lee et al., CVPR 2022),
https://arxiv.org/abs/2112.11010. Official code: https://github.com/youngwanLEE/MPViT (reimplemented here
from its description; the official file is only used, outside this repository, to check parity).

Architecture (per stage ``i``, width ``C = embed_dims[i]``, ``P = num_path[i]`` paths):

- stem: two Conv-BN-Hardswish 3x3 stride-2 convs (3 -> C0/2 -> C0), stride 4 in total;
- multi-scale patch embedding (``patch_embed_stages.i``): ``P`` *chained* depthwise-separable
  conv units (DW 3x3 -> PW 1x1 -> BN -> Hardswish); the output of unit ``p`` feeds unit ``p + 1``, so the
  paths see 3x3, 5x5, 7x7 receptive fields at one resolution. Only unit 0 of stages 1-3 has stride 2;
- one Transformer encoder per path (``mhca_stages.i.mhca_blks.p``): every block applies the encoder's
  shared conv position encoding (``x + DWConv3x3(x)``), then pre-norm factorized attention with a conv
  relative position encoding (CoaT), then a GELU MLP. With ``q, k, v`` in ``(B, h, N, d)``:
  ``out = d^-0.5 * q (softmax_N(k)^T v) + q * DWConv(v)``, the depthwise conv of ``v`` using 3x3 / 5x5 /
  7x7 kernels on 2 / 3 / 3 head groups (channel order ``(h d)``);
- a local conv path (``InvRes``, a residual 1x1 -> DW 3x3 -> 1x1 Conv-BN block) on the first path's
  embedding;
- aggregation: concat [local, path_0 .. path_{P-1}] -> Conv-BN-Hardswish 1x1 to the next stage's width.

Stage ``i`` outputs stride ``4 * 2**i`` with ``embed_dims[i + 1]`` channels (``embed_dims[3]`` for the last
stage), e.g. 96/176/216/216 for ``mpvit_tiny``: these are the channels a detection/segmentation neck needs.
The classifier is global average pooling -> ``cls_head.cls`` (no final norm).

Input sizes: every stride-2 conv is a 3x3 conv with padding 1, so any ``H, W >= 1`` works (feature maps are
``ceil(H / 4 / 2**i)``); nothing in the network has a minimum size. Empty spatial inputs, non-4D inputs and a
wrong channel count raise ``ValueError``.

State dict and the official aliased modules
-------------------------------------------
The official ``MHCAEncoder`` owns one ``cpe`` (ConvPosEnc) and one ``crpe`` (ConvRelPosEnc) shared by all of
its blocks, and registers them as children of the encoder, of every block and of every block's attention.
``state_dict()`` therefore holds each shared tensor under 1 + 2L names per encoder (873 keys for 551 tensors
in MPViT-T). Here the shared modules are registered once, at encoder level
(``mhca_stages.i.mhca_blks.p.cpe.*`` / ``.crpe.*``), and handed to the blocks at call time, so our
``state_dict()`` has one key per tensor. All other key names are the official ones, so our keys are exactly
the official keys minus the aliases.

:func:`checkpoint_filter_fn` maps an official state dict to ours: every alias
``...mhca_blks.p.MHCA_layers.l.cpe.*``, ``...MHCA_layers.l.crpe.*`` and
``...MHCA_layers.l.factoratt_crpe.crpe.*`` is folded onto its encoder-level key. In a genuine official
checkpoint all copies are the very same tensor (they share storage after ``torch.load``). If the copies of
one tensor disagree (an edited or corrupted file) the filter raises ``CheckpointMismatchError`` naming the
keys instead of silently picking one of them: the official model cannot hold different values there, so
there is no correct choice to make. A checkpoint that has only alias copies (no encoder-level key) loads
from them. Our own state dicts pass through unchanged.

Deviations from the official code (none changes outputs with default arguments):

- ``drop_rate`` is honoured (dropout before the classifier; official ``MPViT`` swallows it in ``**kwargs``);
- the builders apply the official training recipe's drop-path rates as defaults (T 0.0, XS 0.0, S 0.05,
  B 0.3; the official factories default to 0.0 and take the rate from the command line);
- ``get_classifier()`` returns the real classifier (the official one refers to a non-existent ``self.head``);
- default cfg: ``first_conv='stem.0.conv'`` and ``classifier='cls_head.cls'`` (official names are stale), and
  ``crop_pct=0.875`` = the official eval transform (resize 256, center crop 224; the official cfg says 0.9).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ._builder import build_model
from ._layers import (
    DepthwiseConv2d, FreshActivation, _no_graph, activate, add_to_fresh, channels_last_weights, check_global_pool,
    check_image_batch, grad_checkpointing_mode, init_weights_trunc_normal, linear_head, run_block)
from ._checkpoint import CheckpointMismatchError, load_checkpoint

__all__ = ["MPViT", "checkpoint_filter_fn"]

_DEFAULT_CRPE_WINDOW = {3: 2, 5: 3, 7: 3}


def _normal_fan_out_(conv: nn.Conv2d, divide_groups: bool = False) -> None:
    """Official conv init: N(0, sqrt(2 / fan_out)), fan_out = k_h * k_w * out_channels (/ groups)."""
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
    if divide_groups:
        fan_out //= conv.groups
    nn.init.normal_(conv.weight, 0.0, (2.0 / fan_out) ** 0.5)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _gelu_on_fresh_input() -> nn.Module:
    """timm's ``Mlp`` applies its activation to fc1's fresh output: in place in inference."""
    return FreshActivation(nn.GELU())


class ConvBnAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional Hardswish. Keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_chs, out_chs, kernel_size=1, stride=1, padding=0, groups=1, act=False):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.Hardswish() if act else nn.Identity()
        _normal_fan_out_(self.conv)

    def forward(self, x):
        return activate(self.act, self.bn(self.conv(x)))


class DwSepConvBnAct(nn.Module):
    """Depthwise 3x3 (no bias) -> pointwise 1x1 (no bias) -> BatchNorm -> Hardswish."""

    def __init__(self, dim, stride=1):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, stride, 1, groups=dim, bias=False)
        self.pwconv = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.Hardswish()
        _normal_fan_out_(self.dwconv)
        _normal_fan_out_(self.pwconv)

    def forward(self, x):
        return activate(self.act, self.bn(self.pwconv(self.dwconv(x))))


class PatchEmbedUnit(nn.Module):
    """One path of the multi-scale patch embedding (key prefix ``patch_conv``)."""

    def __init__(self, dim, stride=1):
        super().__init__()
        self.patch_conv = DwSepConvBnAct(dim, stride)

    def forward(self, x):
        return self.patch_conv(x)


class MultiPathPatchEmbed(nn.Module):
    """``num_path`` chained patch-embed units; returns every unit's output (one input per path)."""

    def __init__(self, dim, num_path, stride=1):
        super().__init__()
        self.patch_embeds = nn.ModuleList(
            [PatchEmbedUnit(dim, stride if i == 0 else 1) for i in range(num_path)]
        )

    def forward(self, x) -> List[torch.Tensor]:
        outs = []
        for unit in self.patch_embeds:
            x = unit(x)
            outs.append(x)
        return outs


class ConvPosEnc(nn.Module):
    """Conv position encoding on tokens: ``x + DWConv3x3(x)`` on the (H, W) grid."""

    def __init__(self, dim, kernel_size=3):
        super().__init__()
        self.proj = DepthwiseConv2d(dim, kernel_size, 1, kernel_size // 2)

    def forward(self, x, size: Tuple[int, int]):
        B, N, C = x.shape
        grid = x.transpose(1, 2).reshape(B, C, size[0], size[1])
        return add_to_fresh(self.proj(grid), grid).flatten(2).transpose(1, 2)


class ConvRelPosEnc(nn.Module):
    """Conv relative position encoding: ``q * DWConv(v)``, one kernel size per group of heads.

    ``window`` maps kernel size -> number of heads (default {3: 2, 5: 3, 7: 3}); the heads are taken in
    order, so with 8 heads heads 0-1 use 3x3, 2-4 use 5x5, 5-7 use 7x7.
    """

    def __init__(self, head_dim, num_heads, window: Union[int, Dict[int, int]] = None):
        super().__init__()
        window = _DEFAULT_CRPE_WINDOW if window is None else window
        if isinstance(window, int):
            window = {window: num_heads}
        if sum(window.values()) != num_heads:
            raise ValueError(f"crpe window head splits {window} must add up to num_heads={num_heads}")
        self.head_dim = head_dim
        self.num_heads = num_heads
        self.conv_list = nn.ModuleList()
        self.channel_splits = []
        for k, heads in window.items():
            ch = heads * head_dim
            self.conv_list.append(DepthwiseConv2d(ch, k, 1, k // 2))
            self.channel_splits.append(ch)
        channels_last_weights(self)  # v arrives as (B, N, C) tokens, channels-last in memory as a map

    def forward(self, q, v, size: Tuple[int, int]):
        B, h, N, d = v.shape
        v_img = v.transpose(-1, -2).reshape(B, h * d, size[0], size[1])  # channels in (h d) order
        parts = torch.split(v_img, self.channel_splits, dim=1)
        conv_v = torch.cat([conv(p) for conv, p in zip(self.conv_list, parts)], dim=1)
        conv_v = conv_v.reshape(B, h, d, N).transpose(-1, -2)
        return q * conv_v


def _heads_to_tokens(e: torch.Tensor, pos: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * e + pos`` of (B, h, N, d) tensors as (B, N, h d) tokens. With no gradient recorded the sum is
    written straight into the token layout, with ``e`` (the einsum's fresh output) scaled in place: one new
    tensor and two passes instead of three of each (MPViT-T inference at 224^2, batch 8, CPU: 5 % less time);
    the same values."""
    B, h, N, d = e.shape
    if not _no_graph(e, pos):
        return (scale * e + pos).transpose(1, 2).reshape(B, N, h * d)
    out = torch.empty(B, N, h, d, dtype=torch.result_type(e, pos), device=e.device)
    torch.add(e.mul_(scale), pos, out=out.transpose(1, 2))
    return out.view(B, N, h * d)


class FactorAttnConvRelPosEnc(nn.Module):
    """Factorized attention ``d^-0.5 * q (softmax_N(k)^T v)`` plus the (shared) conv relative position
    encoding, then an output projection. The CRPE module is passed in at call time (it belongs to the
    encoder)."""

    def __init__(self, dim, num_heads=8, qkv_bias=True, qk_scale=None, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, size: Tuple[int, int], crpe: ConvRelPosEnc):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        # einsums with the official equations (not the equal matmuls) while traced: fvcore counts an einsum
        # through numpy's einsum_path, rounded to 4 significant digits, so only the same ops give the official
        # FLOP count. Otherwise the softmax over the tokens runs along the last dim of (B, h, d, N), the context
        # matmul's left operand as it is: MPViT-T inference at 224^2, batch 8, CPU 346 -> 317 ms (the official
        # softmax over dim 2 of k, 8 channels wide at stage 1, copies and reduces strided); values within fp32
        # rounding (another summation order).
        if torch.jit.is_tracing():
            context = torch.einsum("b h n k, b h n v -> b h k v", k.softmax(dim=2), v)  # (B, h, d, d)
        else:
            context = k.transpose(-1, -2).softmax(dim=-1) @ v
        x = _heads_to_tokens(torch.einsum("b h n k, b h k v -> b h n v", q, context), crpe(q, v, size), self.scale)
        return self.proj_drop(self.proj(x))


class MHCABlock(nn.Module):
    """``x = cpe(x); x += DropPath(attn(LN(x))); x += DropPath(MLP(LN(x)))`` with the encoder's shared
    ``cpe`` / ``crpe`` passed in at call time."""

    def __init__(self, dim, num_heads=8, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.factoratt_crpe = FactorAttnConvRelPosEnc(dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=_gelu_on_fresh_input)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x, size: Tuple[int, int], cpe: ConvPosEnc, crpe: ConvRelPosEnc):
        x = cpe(x, size)
        x = add_to_fresh(self.drop_path(self.factoratt_crpe(self.norm1(x), size, crpe)), x)
        x = add_to_fresh(self.drop_path(self.mlp(self.norm2(x))), x)
        return x


class MHCAEncoder(nn.Module):
    """One path's Transformer encoder: the shared ``cpe`` / ``crpe`` and ``num_layers`` blocks.
    Input and output are NCHW maps."""

    def __init__(self, dim, num_layers=1, num_heads=8, mlp_ratio=4.0, drop_path: Sequence[float] = (),
                 qkv_bias=True, qk_scale=None, crpe_window=None):
        super().__init__()
        self.grad_checkpointing = False
        self.cpe = ConvPosEnc(dim, 3)
        self.crpe = ConvRelPosEnc(dim // num_heads, num_heads, crpe_window)
        dp = list(drop_path) or [0.0] * num_layers
        self.MHCA_layers = nn.ModuleList([
            MHCABlock(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop_path=dp[i])
            for i in range(num_layers)
        ])

    def forward(self, x):
        B, C, H, W = x.shape
        size = (H, W)
        x = x.flatten(2).transpose(1, 2)
        for layer in self.MHCA_layers:
            x = run_block(layer, x, size, self.cpe, self.crpe, checkpointed=self.grad_checkpointing)
        return x.transpose(1, 2).reshape(B, C, H, W)


class ResBlock(nn.Module):
    """Local conv path: ``x + ConvBN1x1(Hswish(BN(DW3x3(ConvBNHswish1x1(x)))))``."""

    def __init__(self, dim):
        super().__init__()
        self.conv1 = ConvBnAct(dim, dim, act=True)
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.act = nn.Hardswish()
        self.conv2 = ConvBnAct(dim, dim, act=False)
        for m in self.modules():  # official: fan_out divided by groups for every conv of this block
            if isinstance(m, nn.Conv2d):
                _normal_fan_out_(m, divide_groups=True)

    def forward(self, x):
        return add_to_fresh(self.conv2(activate(self.act, self.norm(self.dwconv(self.conv1(x))))), x)


class MHCAStage(nn.Module):
    """Per-path encoders + local conv path on the first path's input, concatenated and aggregated by a
    1x1 Conv-BN-Hardswish to ``out_dim`` channels."""

    def __init__(self, dim, out_dim, num_layers=1, num_heads=8, mlp_ratio=4.0, num_path=3,
                 drop_path: Sequence[float] = (), qkv_bias=True, qk_scale=None, crpe_window=None):
        super().__init__()
        self.mhca_blks = nn.ModuleList([
            MHCAEncoder(dim, num_layers, num_heads, mlp_ratio, drop_path, qkv_bias, qk_scale, crpe_window)
            for _ in range(num_path)
        ])
        self.InvRes = ResBlock(dim)
        self.aggregate = ConvBnAct(dim * (num_path + 1), out_dim, act=True)

    def forward(self, inputs: List[torch.Tensor]):
        outs = [self.InvRes(inputs[0])]
        outs.extend(enc(x) for x, enc in zip(inputs, self.mhca_blks))
        return self.aggregate(torch.cat(outs, dim=1))


class ClsHead(nn.Module):
    """Global average pool -> dropout -> ``cls`` Linear."""

    def __init__(self, in_features, num_classes, global_pool="avg", drop_rate=0.0):
        super().__init__()
        self.in_features = in_features
        self.global_pool = global_pool
        self.drop = nn.Dropout(drop_rate)
        self.cls = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes, global_pool=None):
        check_global_pool("MPViT", global_pool, ("avg", ""))
        if global_pool is not None:
            self.global_pool = global_pool
        self.cls = linear_head(self.in_features, num_classes)

    def forward(self, x, pre_logits: bool = False):
        if self.global_pool == "avg":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        x = self.drop(x)
        return x if pre_logits else self.cls(x)


class MPViT(nn.Module):
    """Multi-Path Vision Transformer.

    Args:
        in_chans: input channels.
        num_classes: classifier classes (0 = no classifier).
        global_pool: 'avg' or '' (no pooling in ``forward_head``).
        num_path: paths per stage.
        num_layers: Transformer blocks per path, per stage.
        embed_dims: stage widths; stage ``i`` outputs ``embed_dims[i + 1]`` (last: ``embed_dims[-1]``).
        mlp_ratios: MLP expansion per stage.
        num_heads: attention heads per stage.
        crpe_window: kernel size -> number of heads of the conv relative position encoding.
        qkv_bias: bias of the qkv Linear (official: True).
        qk_scale: override of the factor-attention scale (official: head_dim ** -0.5).
        drop_rate: dropout before the classifier (ignored by the official code; default 0 matches it).
        drop_path_rate: stochastic depth, linear over all blocks of a path sequence (sum(num_layers));
            every path of a stage uses the same per-layer rates.
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            num_path: Sequence[int] = (2, 3, 3, 3),
            num_layers: Sequence[int] = (1, 2, 4, 1),
            embed_dims: Sequence[int] = (64, 96, 176, 216),
            mlp_ratios: Sequence[float] = (2, 2, 2, 2),
            num_heads: Sequence[int] = (8, 8, 8, 8),
            crpe_window: Optional[Dict[int, int]] = None,
            qkv_bias: bool = True,
            qk_scale: Optional[float] = None,
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        num_stages = len(embed_dims)
        if not (len(num_path) == len(num_layers) == len(mlp_ratios) == len(num_heads) == num_stages):
            raise ValueError("num_path, num_layers, embed_dims, mlp_ratios and num_heads need one entry per stage")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.num_stages = num_stages

        dpr = torch.linspace(0, drop_path_rate, sum(num_layers), device="cpu").tolist()
        self.stem = nn.Sequential(
            ConvBnAct(in_chans, embed_dims[0] // 2, 3, 2, 1, act=True),
            ConvBnAct(embed_dims[0] // 2, embed_dims[0], 3, 2, 1, act=True),
        )
        self.patch_embed_stages = nn.ModuleList()
        self.mhca_stages = nn.ModuleList()
        self.feature_info = []
        cur = 0
        for i in range(num_stages):
            out_dim = embed_dims[i + 1] if i + 1 < num_stages else embed_dims[i]
            self.patch_embed_stages.append(MultiPathPatchEmbed(embed_dims[i], num_path[i], 1 if i == 0 else 2))
            self.mhca_stages.append(MHCAStage(
                embed_dims[i], out_dim, num_layers[i], num_heads[i], mlp_ratios[i], num_path[i],
                drop_path=dpr[cur:cur + num_layers[i]], qkv_bias=qkv_bias, qk_scale=qk_scale,
                crpe_window=crpe_window,
            ))
            cur += num_layers[i]
            self.feature_info.append(dict(num_chs=out_dim, reduction=4 * 2 ** i, module=f"mhca_stages.{i}"))
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.cls_head = ClsHead(self.num_features, num_classes, global_pool, drop_rate)

        self.apply(init_weights_trunc_normal)

    # ----------------------------------------------------------------------------------- timm API
    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        return dict(
            stem=r"^stem",
            blocks=[
                (r"^(?:patch_embed_stages|mhca_stages)\.(\d+)", None),
            ] if coarse else [
                (r"^patch_embed_stages\.(\d+)", (0,)),
                (r"^mhca_stages\.(\d+)\.mhca_blks\.\d+\.MHCA_layers\.(\d+)", None),
                (r"^mhca_stages\.(\d+)\.mhca_blks\.\d+\.(?:cpe|crpe)", (0,)),
                (r"^mhca_stages\.(\d+)\.(?:InvRes|aggregate)", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool | str = True):
        enable = grad_checkpointing_mode(enable)
        for stage in self.mhca_stages:
            for enc in stage.mhca_blks:
                enc.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.cls_head.cls

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.cls_head.reset(num_classes, global_pool)

    def load_pretrained(self, path, checkpoint_key: Optional[str] = None):
        """Loads an official MPViT classification checkpoint (or one of ours); see the module docstring."""
        load_checkpoint(self, path, checkpoint_filter_fn, checkpoint_key=checkpoint_key)

    # ----------------------------------------------------------------------------------- forward
    def _check_input(self, x):
        # every stride-2 conv is 3x3 with padding 1: any non-empty input works
        check_image_batch("MPViT", x, self.in_chans, weight_dtype=next(self.parameters()).dtype)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Returns the stage outputs selected by ``indices`` (NCHW or NHWC). MPViT has no norm layers
        on its stage outputs, so ``norm`` has no effect."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.mhca_stages), indices)
        last = max_index if stop_early else len(self.mhca_stages) - 1
        intermediates = []
        x = self.stem(x)
        for i in range(last + 1):
            x = self.mhca_stages[i](self.patch_embed_stages[i](x))
            if i in take_indices:
                intermediates.append(x if output_fmt == "NCHW" else x.permute(0, 2, 3, 1))
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        """Drops the stages after the last one needed for ``indices`` (and the head)."""
        take_indices, max_index = feature_take_indices(len(self.mhca_stages), indices)
        prune_end = max_index < len(self.mhca_stages) - 1
        self.patch_embed_stages = self.patch_embed_stages[:max_index + 1]
        self.mhca_stages = self.mhca_stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.cls_head = ClsHead(self.num_features, 0, self.cls_head.global_pool, self.drop_rate)
            self.num_classes = 0
        elif prune_head:
            self.reset_classifier(0)
        return take_indices

    def forward_features(self, x):
        self._check_input(x)
        x = self.stem(x)
        for embed, stage in zip(self.patch_embed_stages, self.mhca_stages):
            x = stage(embed(x))
        return x

    def forward_head(self, x, pre_logits: bool = False):
        return self.cls_head(x, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


# --------------------------------------------------------------------------------------- checkpoints
# official alias of an encoder's shared module inside block l (and inside block l's attention)
_ALIAS_RE = re.compile(r"^(.*\.mhca_blks\.\d+\.)MHCA_layers\.\d+\.(?:factoratt_crpe\.)?(cpe|crpe)\.(.+)$")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return torch.equal(a, b)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Maps an official MPViT state dict (already taken out of its ``{'model': ...}`` container) to ours.

    All keys keep their names except the aliases of the encoders' shared CPE / CRPE modules
    (``*.MHCA_layers.{l}.cpe.*``, ``*.MHCA_layers.{l}.crpe.*``, ``*.MHCA_layers.{l}.factoratt_crpe.crpe.*``),
    which are folded onto the encoder-level key (``*.mhca_blks.{p}.cpe.*`` / ``.crpe.*``). All copies of one
    tensor must be equal; otherwise ``CheckpointMismatchError`` names the disagreeing keys. Idempotent:
    our own state dicts (no aliases) are returned unchanged.
    """
    out: Dict[str, torch.Tensor] = {}
    aliases: Dict[str, List[Tuple[str, torch.Tensor]]] = {}
    for k, v in state_dict.items():
        m = _ALIAS_RE.match(k)
        if m is None:
            out[k] = v
        else:
            aliases.setdefault(f"{m.group(1)}{m.group(2)}.{m.group(3)}", []).append((k, v))
    disagree = []
    for canon, copies in aliases.items():
        ref_key, ref = (canon, out[canon]) if canon in out else copies[0]
        bad = [k for k, v in copies if not _same_tensor(v, ref)]
        if bad:
            disagree.append(f"{ref_key} vs {', '.join(bad)}")
        out.setdefault(canon, ref)
    if disagree:
        raise CheckpointMismatchError(
            "MPViT checkpoint: the aliased copies of a shared CPE/CRPE tensor disagree (an official checkpoint "
            "stores one tensor under all these names; refusing to pick one): " + "; ".join(disagree[:10])
            + (f" ... (+{len(disagree) - 10} more)" if len(disagree) > 10 else "")
        )
    return out


def _cfg(**kwargs):
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0.conv",
        "classifier": "cls_head.cls",
        "custom_load": True,
        "license": "gpl-3.0",
        "paper_ids": "arXiv:2112.11010",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "mpvit_tiny.in1k": _cfg(),
    "mpvit_xsmall.in1k": _cfg(),
    "mpvit_small.in1k": _cfg(),
    "mpvit_base.in1k": _cfg(),
})


def _create_mpvit(variant, pretrained=False, **kwargs):
    # build_model: timm's build_model_with_cfg with this package's conventions (official files go through
    # ``load_pretrained`` even when given as pretrained_cfg_overlay=dict(file=...); features via
    # forward_intermediates, out_indices (0, 1, 2, 3))
    return build_model(MPViT, variant, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def mpvit_tiny(pretrained=False, **kwargs) -> MPViT:
    """MPViT-T: 5,843,736 params, 1.654 GFLOPs (fvcore, 224), stage channels 96/176/216/216."""
    model_args = dict(num_path=(2, 3, 3, 3), num_layers=(1, 2, 4, 1), embed_dims=(64, 96, 176, 216),
                      mlp_ratios=(2, 2, 2, 2), num_heads=(8, 8, 8, 8), drop_path_rate=0.0)
    return _create_mpvit("mpvit_tiny", pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def mpvit_xsmall(pretrained=False, **kwargs) -> MPViT:
    """MPViT-XS: 10,573,448 params, 2.971 GFLOPs, stage channels 128/192/256/256."""
    model_args = dict(num_path=(2, 3, 3, 3), num_layers=(1, 2, 4, 1), embed_dims=(64, 128, 192, 256),
                      mlp_ratios=(4, 4, 4, 4), num_heads=(8, 8, 8, 8), drop_path_rate=0.0)
    return _create_mpvit("mpvit_xsmall", pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def mpvit_small(pretrained=False, **kwargs) -> MPViT:
    """MPViT-S: 22,892,400 params, 4.800 GFLOPs, stage channels 128/216/288/288."""
    model_args = dict(num_path=(2, 3, 3, 3), num_layers=(1, 3, 6, 3), embed_dims=(64, 128, 216, 288),
                      mlp_ratios=(4, 4, 4, 4), num_heads=(8, 8, 8, 8), drop_path_rate=0.05)
    return _create_mpvit("mpvit_small", pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def mpvit_base(pretrained=False, **kwargs) -> MPViT:
    """MPViT-B: 74,845,976 params, 16.445 GFLOPs, stage channels 224/368/480/480."""
    model_args = dict(num_path=(2, 3, 3, 3), num_layers=(1, 3, 8, 3), embed_dims=(128, 224, 368, 480),
                      mlp_ratios=(4, 4, 4, 4), num_heads=(8, 8, 8, 8), drop_path_rate=0.3)
    return _create_mpvit("mpvit_base", pretrained=pretrained, **dict(model_args, **kwargs))
