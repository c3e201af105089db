"""Spatial-Mamba: visual state space models with structure-aware state fusion.

Paper: `Spatial-Mamba: Effective Visual State Space Models via Structure-Aware State Fusion` (Xiao, Li, Zhang,
Meng, Zhang; ICLR 2025, arXiv:2410.15091). Official code: https://github.com/EdwardChasel/Spatial-Mamba
(Apache-2.0). This file is an independent reimplementation on torch + timm that needs no CUDA extension:
the selective scan and the state fusion come from :mod:`kernels.selective_scan` / :mod:`kernels.state_fusion`
(pure-PyTorch on CPU, Triton on GPU), and it loads the official classification checkpoints as published.

Architecture (all variants; tokens are channels-last (B, H, W, C) inside the stages):

- stem (stride 4): conv3x3 s2 (3 -> C/2) BN ReLU; a residual pair [conv3x3 BN ReLU, conv3x3 BN] on C/2; then
  conv3x3 s2 (C/2 -> 4C) BN ReLU and conv1x1 (4C -> C) BN; convs without bias;
- four stages of ``SpatialMambaBlock``s; after stages 0-2 an MBConv-like ``DownSampling`` (1x1 conv
  C -> 8C ReLU, depthwise 3x3 s2 ReLU, 1x1 conv 8C -> 2C BN; convs with bias);
- block: ``x + cpe1(x)`` (depthwise 3x3 conv, zero padding), ``x + DropPath(SASSM(LN(x)))``, ``x + cpe2(x)``,
  ``x + DropPath(MLP(LN(x)))`` (MLP ratio 4, GELU); every LayerNorm has eps 1e-5;
- structure-aware SSM (``self_attention``): in_proj (C -> 2 Di, no bias, Di = 2C) split into x and z; depthwise
  3x3 conv (bias) + SiLU on x gives u; ``x_proj_weight`` (R + 2N, Di) gives dt_low | B | C (R = ceil(C / 16),
  N = d_state = 1); ``dt_projs_weight`` (Di, R) gives the raw delta, ``dt_projs_bias`` enters the softplus inside
  the scan; A = -exp(A_logs). The scan returns every hidden state h_t (raster order over the H x W grid), the
  states are fused over the 2-D grid by SASF (three dilated (1, 3, 5) depthwise 3x3 kernels with replicate
  padding mixed by alpha), then y = C_t * h_fused + D * u, out_norm (LN over Di), times SiLU(z), out_proj;
- head: LayerNorm over the last stage tokens, token mean, Linear.

Variants (official configs): T dims 64, depths (2, 4, 8, 4), drop_path 0.2; S dims 64, depths (2, 4, 21, 5),
drop_path 0.3; B dims 96, depths (2, 4, 21, 5), drop_path 0.5. Parameters 26,748,862 / 43,074,280 / 95,745,592.

Checkpoints: the module and parameter names are exactly the official ones (``patch_embed.*``,
``layers.{i}.blocks.{j}.*``, ``layers.{i}.downsample.*``, ``norm.*``, ``head.*``; downstream backbones add
``outnorm{i}.*``), so official ``{'model': state_dict, 'model_ema': ..., ...}`` files load unchanged.
:func:`checkpoint_filter_fn` also accepts mmdet / mmseg checkpoints (``backbone.`` prefix, the detector's other
keys dropped), adapts the stem conv to another ``in_chans`` and drops the parts of the model that
``features_only`` pruned.

Downstream backbones: ``out_norm=True`` adds the official ``Backbone_SpatialMamba`` output LayerNorms
``outnorm{i}`` (one per stage, applied to the stage outputs by ``forward_intermediates`` / ``features_only``).
Loading a classification checkpoint into such a model keeps the out-norms at their identity initialisation,
as the official backbone does (documented exception to the "every key must match" rule; all other keys must).

Differences from the official code (none changes the fp32 eval outputs of official weights):

- the eval-mode state fusion folds the three kernels into one 11x11 kernel from the *current* weights on every
  forward (official: cached in ``_merge_weight`` on the first eval forward and never refreshed, so validation
  after further training or after loading other weights used a stale kernel). ``fused_eval=False`` evaluates
  with the three-branch form instead; both are the same function;
- the state fusion always runs in fp32 (the scan returns fp32 states); under AMP the official training path
  cast the states to fp16 inside F.conv2d (a likely cause of the inf/NaN gradient norms of official issue #27);
- ``d_state > 1`` is supported (the official CUDA kernels are only correct for 1): the states of each state
  index are fused with the same per-channel kernels and y = sum_n C_n * h_fused_n + D * u;
- ``drop_path_rate`` defaults to the official per-variant training value; ``drop_rate`` is the official
  ``pos_drop`` after the stem (0 by default);
- ``no_weight_decay`` returns an empty set (official: ``{'absolute_pos_embed'}``, which matches nothing).
"""
from __future__ import annotations

import math
import re
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import adapt_input_conv

from kernels.selective_scan import selective_scan
from kernels.state_fusion import state_fusion

from ._builder import build_model
from ._layers import (
    activate, add_to_fresh, check_global_pool, check_image_batch, grad_checkpointing_mode, init_weights_trunc_normal,
    linear_head, run_block)
from ._checkpoint import FilteredState, extract_state_dict, load_checkpoint

__all__ = ["SpatialMamba", "SpatialMambaBlock", "StructureAwareSSM", "StateFusion", "checkpoint_filter_fn",
           "flop_count_handles", "count_flops"]


class ConvLayer(nn.Module):
    """conv -> optional BatchNorm -> optional ReLU (official ``ConvLayer``; keys ``conv``, ``norm``)."""

    def __init__(self, in_chs, out_chs, kernel_size=3, stride=1, padding=0, groups=1, bias=True, norm=True,
                 act=True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(out_chs) if norm else None
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = activate(self.act, x)
        return x


class Stem(nn.Module):
    """Stride-4 conv stem with a residual middle pair. NCHW in, NHWC out."""

    def __init__(self, in_chans=3, embed_dim=64):
        super().__init__()
        half = embed_dim // 2
        self.conv1 = ConvLayer(in_chans, half, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Sequential(
            ConvLayer(half, half, 3, padding=1, bias=False),
            ConvLayer(half, half, 3, padding=1, bias=False, act=False),
        )
        self.conv3 = nn.Sequential(
            ConvLayer(half, embed_dim * 4, 3, stride=2, padding=1, bias=False),
            ConvLayer(embed_dim * 4, embed_dim, 1, bias=False, act=False),
        )

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x) + x
        x = self.conv3(x)
        return x.permute(0, 2, 3, 1)


class DownSampling(nn.Module):
    """MBConv-like stride-2 downsampling C -> 2C (hidden 8C). NHWC in and out."""

    def __init__(self, dim, ratio=4.0):
        super().__init__()
        hidden = int(2 * dim * ratio)
        self.conv = nn.Sequential(
            ConvLayer(dim, hidden, 1, norm=False),
            ConvLayer(hidden, hidden, 3, stride=2, padding=1, groups=hidden, norm=False),
            ConvLayer(hidden, 2 * dim, 1, act=False),
        )

    def forward(self, x):
        return self.conv(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(activate(self.act, self.fc1(x)))


class StateFusion(nn.Module):
    """Structure-aware state fusion: alpha-mixed dilated (1, 3, 5) depthwise 3x3 kernels, replicate padding.

    Training uses the three-branch form; eval (with ``fused_eval``) the equivalent folded 11x11 kernel, derived
    from the current weights on every call (never cached, so never stale). Initialised with all-ones kernels
    and alpha = 1 as the official code.
    """

    def __init__(self, dim, fused_eval=True, impl="auto"):
        super().__init__()
        self.dim = dim
        self.fused_eval = fused_eval
        self.impl = impl
        self.kernel_3 = nn.Parameter(torch.ones(dim, 1, 3, 3))    # dilation 1
        self.kernel_3_1 = nn.Parameter(torch.ones(dim, 1, 3, 3))  # dilation 3
        self.kernel_3_2 = nn.Parameter(torch.ones(dim, 1, 3, 3))  # dilation 5
        self.alpha = nn.Parameter(torch.ones(3))

    def forward(self, h):
        folded = self.fused_eval and not self.training
        dt = torch.promote_types(h.dtype, torch.float32)  # fp32 at least, also under AMP (fp64 stays fp64)
        return state_fusion(h.to(dt), self.kernel_3.to(dt), self.kernel_3_1.to(dt), self.kernel_3_2.to(dt),
                            self.alpha.to(dt), folded=folded, impl=self.impl)


class StructureAwareSSM(nn.Module):
    """The Spatial-Mamba token mixer (state_dict name ``self_attention``). NHWC in and out."""

    def __init__(self, d_model, d_state=1, d_conv=3, expand=2, dt_rank="auto", dt_min=0.001, dt_max=0.1,
                 dt_scale=1.0, dt_init_floor=1e-4, fused_eval=True, scan_impl="auto", fusion_impl="auto"):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_impl = scan_impl
        Di, R, N = self.d_inner, self.dt_rank, d_state

        self.in_proj = nn.Linear(d_model, 2 * Di, bias=False)
        self.conv2d = nn.Conv2d(Di, Di, d_conv, padding=(d_conv - 1) // 2, groups=Di, bias=True)
        self.act = nn.SiLU()
        # bare parameters as in the official code (their Linear modules were deleted after init)
        bound = Di ** -0.5  # nn.Linear(Di, R + 2N) default init
        self.x_proj_weight = nn.Parameter(torch.empty(R + 2 * N, Di).uniform_(-bound, bound))
        dt_std = R ** -0.5 * dt_scale
        self.dt_projs_weight = nn.Parameter(torch.empty(Di, R).uniform_(-dt_std, dt_std))
        dt = torch.exp(torch.rand(Di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(Di, 1))
        self.Ds = nn.Parameter(torch.ones(Di))
        self.state_fusion = StateFusion(Di, fused_eval=fused_eval, impl=fusion_impl)
        self.out_norm = nn.LayerNorm(Di)
        self.out_proj = nn.Linear(Di, d_model, bias=False)

    def ssm(self, u):
        """u: (B, Di, H, W) after conv + SiLU. Returns y (B, Di, L) = C * SASF(h) + D * u."""
        Bsz, Di, H, W = u.shape
        L = H * W
        N, R = self.d_state, self.dt_rank
        us = u.reshape(Bsz, Di, L)
        x_dbl = torch.matmul(self.x_proj_weight.view(1, -1, Di), us)  # (B, R + 2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=1)
        dts = torch.matmul(self.dt_projs_weight.view(1, Di, -1), dts)  # (B, Di, L); bias goes into the softplus
        As = -torch.exp(self.A_logs.float())
        h = selective_scan(us, dts, As, Bs, self.dt_projs_bias.float(), delta_softplus=True, impl=self.scan_impl)
        if N == 1:
            h = self.state_fusion(h.view(Bsz, Di, H, W)).view(Bsz, Di, L)
            y = h * Cs
        else:  # extension: every state index is fused with the same per-channel kernels
            hs = h.permute(0, 2, 1, 3).reshape(Bsz * N, Di, H, W)
            hs = self.state_fusion(hs).view(Bsz, N, Di, L)
            y = torch.einsum('bndl,bnl->bdl', hs, Cs.float())
        return y + us * self.Ds.view(-1, 1)

    def forward(self, x):
        Bsz, H, W, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        u = activate(self.act, self.conv2d(x.permute(0, 3, 1, 2).contiguous()))
        y = self.ssm(u)
        y = y.view(Bsz, self.d_inner, H, W).permute(0, 2, 3, 1)
        y = self.out_norm(y)
        y = y * F.silu(z)
        return self.out_proj(y)


class SpatialMambaBlock(nn.Module):
    def __init__(self, dim, drop_path=0., mlp_ratio=4.0, d_state=1, **ssm_kwargs):
        super().__init__()
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = StructureAwareSSM(dim, d_state=d_state, **ssm_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.cpe1(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
        x = add_to_fresh(self.drop_path(self.self_attention(self.ln_1(x))), x)
        x = x + self.cpe2(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
        x = add_to_fresh(self.drop_path(self.mlp(self.ln_2(x))), x)
        return x


class SpatialMambaLayer(nn.Module):
    """One stage: blocks, then (stages 0-2) the downsampling. ``forward`` returns (stage output, downsampled)."""

    def __init__(self, dim, depth, drop_path=(), downsample=True, mlp_ratio=4.0, d_state=1, **ssm_kwargs):
        super().__init__()
        self.dim = dim
        self.grad_checkpointing = False
        self.blocks = nn.ModuleList([
            SpatialMambaBlock(dim, drop_path=drop_path[i], mlp_ratio=mlp_ratio, d_state=d_state, **ssm_kwargs)
            for i in range(depth)])
        self.downsample = DownSampling(dim) if downsample else None

    def forward_blocks(self, x):
        for blk in self.blocks:
            x = run_block(blk, x, checkpointed=self.grad_checkpointing)
        return x

    def forward(self, x):
        x = self.forward_blocks(x)
        return x if self.downsample is None else self.downsample(x)


class SpatialMamba(nn.Module):
    """Spatial-Mamba classification / backbone model.

    Args:
        in_chans, num_classes: input channels, classes (0 = no classifier).
        dims: channels of the four stages (an int ``d`` means (d, 2d, 4d, 8d)).
        depths: blocks per stage.
        d_state: SSM state size N (official: 1; > 1 supported here).
        mlp_ratio: MLP hidden ratio.
        drop_rate: dropout after the stem (the official ``pos_drop``).
        drop_path_rate: stochastic depth, linear from 0 over all blocks.
        out_norm: add the official downstream output LayerNorms ``outnorm{i}`` applied to stage outputs.
        fused_eval: evaluate the state fusion with the folded 11x11 kernel (official eval path).
        scan_impl: selective-scan implementation (``"auto" | "torch" | "triton" | "reference"``).
        fusion_impl: state-fusion implementation (``"auto" | "torch" | "matrix" | "reference"``).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            dims: Union[int, Sequence[int]] = 64,
            depths: Sequence[int] = (2, 4, 8, 4),
            d_state: int = 1,
            mlp_ratio: float = 4.0,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.2,
            out_norm: bool = False,
            fused_eval: bool = True,
            scan_impl: str = "auto",
            fusion_impl: str = "auto",
    ):
        super().__init__()
        if isinstance(dims, int):
            dims = [dims * 2 ** i for i in range(len(depths))]
        if len(dims) != len(depths) or len(depths) != 4:
            raise ValueError(f"Spatial-Mamba has four stages: got dims {dims} and depths {depths}")
        if d_state < 1:
            raise ValueError(f"d_state must be >= 1, got {d_state}")
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.dims = tuple(dims)
        self.drop_rate = drop_rate
        self.has_out_norm = out_norm
        self.pruned = False

        self.patch_embed = Stem(in_chans, dims[0])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        ssm_kwargs = dict(fused_eval=fused_eval, scan_impl=scan_impl, fusion_impl=fusion_impl)
        self.layers = nn.ModuleList()
        self.feature_info = []
        for i in range(4):
            start = sum(depths[:i])
            self.layers.append(SpatialMambaLayer(
                dims[i], depths[i], drop_path=dpr[start:start + depths[i]], downsample=i < 3,
                mlp_ratio=mlp_ratio, d_state=d_state, **ssm_kwargs))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f'layers.{i}'))
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if out_norm:
            for i in range(4):
                self.add_module(f'outnorm{i}', nn.LayerNorm(dims[i]))
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
                (r'^layers\.(\d+)\.blocks\.(\d+)', None),
                (r'^layers\.(\d+)\.downsample', (99999,)),
                (r'^norm|^outnorm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool | str = True):
        enable = grad_checkpointing_mode(enable)
        for layer in self.layers:
            layer.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        check_global_pool("Spatial-Mamba", global_pool, ('avg', ''))
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = linear_head(self.num_features, num_classes)

    def load_pretrained(self, path, checkpoint_key: Optional[str] = None):
        """Loads an official (or our own) checkpoint file; mismatches raise CheckpointMismatchError."""
        load_checkpoint(self, path, checkpoint_filter_fn, checkpoint_key=checkpoint_key)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor):
        check_image_batch("Spatial-Mamba", x, self.in_chans, weight_dtype=next(self.parameters()).dtype)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs before downsampling (strides 4, 8, 16, 32; channels ``dims``), passed through the
        official downstream ``outnorm{i}`` LayerNorms when the model was built with ``out_norm=True``. ``norm``
        is accepted for the timm API; the final ``norm`` belongs to the classification head and is not applied."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        layers = self.layers if torch.jit.is_scripting() or not stop_early else self.layers[:max_index + 1]
        x = self.pos_drop(self.patch_embed(x))
        intermediates = []
        for i, layer in enumerate(layers):
            x = layer.forward_blocks(x)
            if i in take_indices:
                y = getattr(self, f'outnorm{i}')(x) if self.has_out_norm else x
                intermediates.append(y.permute(0, 3, 1, 2) if output_fmt == 'NCHW' else y)
            if layer.downsample is not None:
                x = layer.downsample(x)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        """Drops the stages after the last requested one (and the head / final norm)."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        self.layers[-1].downsample = None
        self.pruned = True
        if max_index < 3:
            self.num_features = self.head_hidden_size = self.dims[max_index]
        if prune_norm or max_index < 3:
            self.norm = nn.Identity()
        if prune_head or max_index < 3:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last stage tokens after the final LayerNorm, NHWC (B, H/32, W/32, dims[-1]) (sizes rounded up)."""
        self._check_input(x)
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(1, 2))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------- FLOPs
def flop_count_handles() -> dict:
    """fvcore op handles for the two custom ops (and the element-wise ops the official counter ignores)."""
    from kernels.selective_scan import OP_NAME as SCAN_OP, selective_scan_flop_jit
    from kernels.state_fusion import OP_NAME as FUSION_OP, state_fusion_flop_jit
    return {SCAN_OP: selective_scan_flop_jit, FUSION_OP: state_fusion_flop_jit,
            "aten::silu": None, "aten::neg": None, "aten::exp": None, "aten::flip": None}


def count_flops(model: nn.Module, input_size=(3, 224, 224)) -> float:
    """GFLOPs as the official counter (fvcore, one multiply-add = one FLOP, batch 1, train-mode graph)."""
    from fvcore.nn import FlopCountAnalysis
    x = torch.randn(1, *input_size)
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            fca = FlopCountAnalysis(model, (x,))
            for name, handle in flop_count_handles().items():
                fca.set_op_handle(name, handle)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return fca.total() / 1e9
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------- checkpoints
_LAYER_KEY = re.compile(r'^layers\.(\d+)\.')


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Maps an official Spatial-Mamba state dict (or ours: same names) onto ``model``.

    Accepts the official containers (``{'model': ..., 'model_ema': ...}``; ``module.`` prefixes) and
    mmdet / mmseg checkpoints (keys under ``backbone.``; the rest of the detector is dropped). Adapts the stem
    conv to another ``in_chans``; drops the final norm and the stages / downsampling that ``features_only``
    pruned; keeps the identity-initialised ``outnorm{i}`` of an ``out_norm=True`` model when the checkpoint has
    none (a classification checkpoint, as the official backbone), and the model's own final ``norm`` when a
    downstream backbone checkpoint (with ``outnorm`` keys) is loaded into a headless model (both named in the
    returned :class:`FilteredState`'s ``keep_init``, which the loader reports). Every other mismatch is
    reported by the loader (:class:`CheckpointMismatchError` naming the keys).
    """
    state_dict = extract_state_dict(state_dict)
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    own = model.state_dict()
    out = dict(state_dict)
    first = 'patch_embed.conv1.conv.weight'
    if first in out and first in own and out[first].ndim == 4 and out[first].shape[1] != own[first].shape[1]:
        out[first] = adapt_input_conv(own[first].shape[1], out[first])
    if getattr(model, 'pruned', False):
        n_layers = len(model.layers)
        for k in list(out):
            m = _LAYER_KEY.match(k)
            if k.startswith('norm.') and 'norm.weight' not in own:
                out.pop(k)
            elif m and (int(m.group(1)) >= n_layers or
                        ('.downsample.' in k and model.layers[int(m.group(1))].downsample is None)):
                out.pop(k)
    has_outnorm = any(k.startswith('outnorm') for k in out)
    keep = []
    if getattr(model, 'has_out_norm', False) and not has_outnorm:
        # classification checkpoint into a downstream backbone: out-norms start at identity (as official)
        keep += [k for k in own if k.startswith('outnorm')]
    if has_outnorm and model.num_classes == 0 and not any(k.startswith('norm.') for k in out):
        # downstream backbone checkpoint into a headless model (features_only prunes the final norm after
        # loading): the final norm keeps its initialisation. A model with a classifier still reports the
        # missing norm / head keys.
        keep += [k for k in own if k.startswith('norm.')]
    return FilteredState(out, keep_init=keep)


# ---------------------------------------------------------------------- registry
def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',  # official eval: resize 256 (bicubic), center crop 224
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.conv1.conv', 'classifier': 'head',
        'custom_load': True, 'license': 'apache-2.0',
        'paper_ids': 'arXiv:2410.15091', 'origin_url': 'https://github.com/EdwardChasel/Spatial-Mamba',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'spatial_mamba_tiny.in1k': _cfg(),
    'spatial_mamba_small.in1k': _cfg(),
    'spatial_mamba_base.in1k': _cfg(),
})


def _create_spatial_mamba(variant: str, pretrained: bool = False, **kwargs) -> SpatialMamba:
    # the package's shared builder: weight files go through load_pretrained (official containers, loud
    # mismatches); features_only uses forward_intermediates
    return build_model(SpatialMamba, variant, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def spatial_mamba_tiny(pretrained=False, **kwargs) -> SpatialMamba:
    model_args = dict(dims=64, depths=(2, 4, 8, 4), d_state=1, mlp_ratio=4.0, drop_path_rate=0.2)
    return _create_spatial_mamba('spatial_mamba_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def spatial_mamba_small(pretrained=False, **kwargs) -> SpatialMamba:
    model_args = dict(dims=64, depths=(2, 4, 21, 5), d_state=1, mlp_ratio=4.0, drop_path_rate=0.3)
    return _create_spatial_mamba('spatial_mamba_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def spatial_mamba_base(pretrained=False, **kwargs) -> SpatialMamba:
    model_args = dict(dims=96, depths=(2, 4, 21, 5), d_state=1, mlp_ratio=4.0, drop_path_rate=0.5)
    return _create_spatial_mamba('spatial_mamba_base', pretrained=pretrained, **dict(model_args, **kwargs))
