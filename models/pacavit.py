"""PaCa-ViT: Patch-to-Cluster Attention vision transformers (Grainger et al., CVPR 2023).

Paper: "PaCa-ViT: Learning Patch-to-Cluster Attention in Vision Transformers", https://arxiv.org/abs/2203.11987
Official code: https://github.com/iVMCL/PaCaViT (MIT). This is an independent reimplementation on plain
torch + timm; it keeps the official ``state_dict`` layout, so the published classification checkpoints
(``IMNET_224_<name>.pth``) load as they are:

    timm.create_model('pacavit_small_p2cconv_100_0', pretrained=True,
                      pretrained_cfg_overlay=dict(file='IMNET_224_pacavit_small_p2cconv_100_0.pth'))

Architecture (per stage i, C = embed_dims[i], M = num_clusters[i]):

- stem ``patch_embed``: Conv3x3/s2 (3 -> C0/2) -> Conv3x3/s2 (C0/2 -> C0), no activation in between,
  -> LayerNorm2d (eps 1e-6); stride 4.
- ``stage{i}``: PaCa blocks, pre-norm: x <- x + DropPath(PaCa(LN(x))), x <- x + DropPath(Mlp(LN(x))).
  PaCa attention with M > 0: z = softmax_N(clustering(x_n)) in R^{B x M x N} (each cluster is a convex
  combination of the N patches), c = LN_c(z x_n), q = W_q x_n, k = W_k c, v = W_v c, multi-head
  softmax(q k^T / sqrt(d)) v -> proj. Cost O(N M) instead of O(N^2). With M = 0 it is plain MHSA over the
  N tokens (no clustering, no cluster norm).
- Clustering (``clustering`` argument): ``'conv'`` (DW kxk conv -> GELU -> 1x1 -> GELU -> 1x1 to M, no bias),
  ``'mlp'`` (Linear C->4C -> GELU -> Linear 4C->M), ``'linear'`` (Linear C->M, no bias; implemented but never
  released officially) or ``'teacher'`` (an external ConvMixer + FPN network computes z for every stage
  from the stem output, and its stage outputs are added to the tokens before ``norm{i}``).
- Where z is computed (``onsite_clustering``, per stage): block 0 always clusters; for later blocks
  0 = stage-wise (reuse block 0's z, each block still has its own cluster norm and q/k/v/proj),
  1 = block-wise (every block clusters), i >= 2 = re-cluster every i blocks (j % i == 0).
- Mlp: fc1 -> DW3x3 with inner residual -> GELU -> fc2.
- ``norm{i}`` (LN) on every stage output; ``transition{i}``: Conv3x3/s2 + LayerNorm2d.
- head: ``norm4`` output -> mean over tokens -> ``head`` Linear.

Differences from the official code, all deliberate:

- Attention uses ``F.scaled_dot_product_attention`` where it pays (``kernels.fused_attention``: on GPUs, and on
  CPU with many keys; the official code uses ``F.multi_head_attention_forward`` or xformers); the math is the
  same (fp32 differences ~1e-6). Otherwise, and while tracing (``torch.jit.trace``, as fvcore does), an explicit
  matmul/softmax/matmul path is used (FLOP counters then see the attention).
- The official factories mutate the shared module-level ``_arch_settings`` (``dict.pop``), so building a
  teacher variant twice raises KeyError and ``drop_path_rate`` given to a factory is silently ignored.
  Here the variant table is immutable and every builder honours ``drop_path_rate``/``num_classes``/...
- With an external teacher, the official code collects the cluster assignments of the stages with M > 0
  into a list and indexes it by stage, which mis-assigns them if a stage with M = 0 precedes a stage with
  M > 0 (no released model does). Here every stage gets its own teacher assignment.
- No ``with_pos_embed`` option (off in every released model); there is no fixed input size.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import adapt_input_conv

from kernels.fused_attention import fused_attention_pays

from ._builder import build_model
from ._layers import (
    DepthwiseConv2d, FreshActivation, activate, add_to_fresh, channels_last_weights, check_global_pool,
    check_image_batch, grad_checkpointing_mode, linear_head, run_block)
from ._checkpoint import extract_state_dict, load_checkpoint

__all__ = ["PaCaViT", "PaCaBlock", "PaCaAttention", "PaCaTeacherConvMixer", "checkpoint_filter_fn"]

_NORM_EPS = 1e-6
# Total stride of the network. Smaller inputs would still run (all convs are padded), but the stage-4 grid
# would no longer be the input at stride 32.
MIN_INPUT_SIZE = 32


def _per_stage(value, num_stages: int, name: str) -> tuple:
    """A scalar is broadcast to all stages; a sequence must have one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f"{name} needs {num_stages} entries (one per stage), got {len(value)}: {value}")
        return tuple(value)
    return (value,) * num_stages


def _tokens_to_map(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], H, W)


def _map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------
# Clustering modules: tokens (B, N, C) -> cluster logits (B, M, N)
# ----------------------------------------------------------------------------------------------------------
class P2CConv(nn.Module):
    """Convolutional clustering: DW kxk conv -> act -> 1x1 conv -> act -> 1x1 conv to M (no bias)."""

    def __init__(self, dim: int, num_clusters: int, kernel_size: int = 7, act_layer=nn.GELU, **_):
        super().__init__()
        self.clustering = nn.Sequential(
            DepthwiseConv2d(dim, kernel_size, 1, (kernel_size - 1) // 2),
            FreshActivation(act_layer()),
            nn.Conv2d(dim, dim, 1),
            FreshActivation(act_layer()),
            nn.Conv2d(dim, num_clusters, 1, bias=False),
        )
        channels_last_weights(self)  # its input is the token grid, channels-last in memory

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.clustering(_tokens_to_map(x, H, W)).flatten(2)


class P2CMlp(nn.Module):
    """MLP clustering: Linear C -> C*mlp_ratio -> act -> Linear -> M (with bias), per token."""

    def __init__(self, dim: int, num_clusters: int, mlp_ratio: float = 4.0, act_layer=nn.GELU, **_):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.clustering = nn.Sequential(
            nn.Linear(dim, hidden), FreshActivation(act_layer()), nn.Linear(hidden, num_clusters))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.clustering(x).transpose(1, 2)


class P2CLinear(nn.Module):
    """Linear clustering: a single Linear C -> M without bias, per token."""

    def __init__(self, dim: int, num_clusters: int, **_):
        super().__init__()
        self.clustering = nn.Sequential(nn.Linear(dim, num_clusters, bias=False))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.clustering(x).transpose(1, 2)


_CLUSTERING = {"conv": P2CConv, "mlp": P2CMlp, "linear": P2CLinear}
CLUSTERING_TYPES = ("conv", "mlp", "linear", "teacher")


# ----------------------------------------------------------------------------------------------------------
# Attention, MLP, block
# ----------------------------------------------------------------------------------------------------------
class PaCaAttention(nn.Module):
    """Patch-to-cluster attention (``num_clusters > 0``) or plain multi-head self-attention (``num_clusters == 0``).

    ``forward(x, H, W, z)`` takes the normalized tokens x (B, N, C) and, for blocks without their own
    clustering module, the cluster assignment z (B, M, N) of an earlier block or of the teacher; it returns
    the attention output and the assignment it used (passed on to the next block of the stage).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_clusters: int = 100,
        clustering: Optional[str] = "conv",
        clustering_kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        cluster_norm: bool = True,
        cluster_pos_embed: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        act_layer=nn.GELU,
        norm_eps: float = _NORM_EPS,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_clusters = num_clusters
        self.attn_drop = attn_drop
        self.clustering = None
        if num_clusters > 0:
            self.cluster_norm = nn.LayerNorm(dim, eps=norm_eps) if cluster_norm else nn.Identity()
            if clustering is not None:
                if clustering not in _CLUSTERING:
                    raise ValueError(f"unknown clustering {clustering!r}; expected one of {sorted(_CLUSTERING)}")
                self.clustering = _CLUSTERING[clustering](
                    dim=dim, num_clusters=num_clusters, kernel_size=clustering_kernel_size,
                    mlp_ratio=mlp_ratio, act_layer=act_layer,
                )
            if cluster_pos_embed:
                self.cluster_pos_enc = nn.Parameter(torch.zeros(1, num_clusters, dim))
                trunc_normal_(self.cluster_pos_enc, std=0.02)
            else:
                self.cluster_pos_enc = None
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, H: int, W: int, z: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B, N, C = x.shape
        if self.num_clusters > 0:
            if self.clustering is not None:
                z = self.clustering(x, H, W).softmax(dim=-1)  # (B, M, N): softmax over the patches
            elif z is None:
                raise ValueError("this PaCa block has no clustering module and needs the cluster assignment z")
            # (B, M, C): clusters are convex combinations of the patches. einsum with the official equation (not
            # bmm, the same product): fvcore counts an einsum through numpy's einsum_path, rounded to 4 significant
            # digits, so only the same op gives the official FLOP count to the unit.
            c = torch.einsum("bmn,bnc->bmc", z, x)
            if self.cluster_pos_enc is not None:
                c = c + self.cluster_pos_enc
            c = self.cluster_norm(c)
        else:
            c = x  # plain self-attention
        M = c.shape[1]
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(c).reshape(B, M, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(c).reshape(B, M, self.num_heads, self.head_dim).transpose(1, 2)
        drop = self.attn_drop if self.training else 0.0
        if torch.jit.is_tracing() or not fused_attention_pays(q, M):
            # explicit form: on CPU with few keys (the clusters) it is faster than SDPA's flash kernel, and tracing
            # FLOP counters (fvcore) see the two attention matmuls
            attn = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            attn = F.dropout(attn.softmax(dim=-1), drop, self.training)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(out)), z


class DWConv(nn.Module):
    """Depth-wise 3x3 conv on the token grid, optionally with an inner residual (dw(x) + x)."""

    def __init__(self, dim: int, kernel_size: int = 3, with_shortcut: bool = True):
        super().__init__()
        self.dwconv = DepthwiseConv2d(dim, kernel_size, 1, (kernel_size - 1) // 2)
        channels_last_weights(self)  # its input is the token grid, channels-last in memory
        self.with_shortcut = with_shortcut

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        y = _map_to_tokens(self.dwconv(_tokens_to_map(x, H, W)))
        return add_to_fresh(y, x) if self.with_shortcut else y


class Mlp(nn.Module):
    """fc1 -> [DW3x3 (+ shortcut)] -> act -> drop -> fc2 -> drop."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, with_dwconv: bool = True,
                 with_shortcut: bool = True, act_layer=nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden, with_shortcut=with_shortcut) if with_dwconv else None
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.fc1(x)
        if self.dwconv is not None:
            x = self.dwconv(x, H, W)
        x = self.drop(activate(self.act, x))
        return self.drop(self.fc2(x))


class PaCaBlock(nn.Module):
    """x <- x + DropPath(g1 * N1a(PaCa(N1b(x)))); x <- x + DropPath(g2 * N2a(Mlp(N2b(x)))).

    By default (pre-norm) N1b/N2b are LayerNorms (``norm1_before``/``norm2_before``) and N1a/N2a are
    identities. ``post_norm`` moves the norms after the branch (``norm*_after``), ``sub_ln`` keeps both;
    ``layer_scale`` (a number) adds the per-channel scales ``gamma1``/``gamma2``. All are off in every
    released model.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_clusters: int,
        clustering: Optional[str],
        clustering_kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        cluster_norm: bool = True,
        cluster_pos_embed: bool = False,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        layer_scale: Optional[float] = None,
        post_norm: bool = False,
        sub_ln: bool = False,
        act_layer=nn.GELU,
        norm_eps: float = _NORM_EPS,
    ):
        super().__init__()

        def norm(flag):
            return nn.LayerNorm(dim, eps=norm_eps) if flag else nn.Identity()

        self.norm1_before = norm(sub_ln or not post_norm)
        self.attn = PaCaAttention(
            dim, num_heads, num_clusters=num_clusters, clustering=clustering,
            clustering_kernel_size=clustering_kernel_size, mlp_ratio=mlp_ratio, cluster_norm=cluster_norm,
            cluster_pos_embed=cluster_pos_embed, attn_drop=attn_drop, proj_drop=proj_drop,
            act_layer=act_layer, norm_eps=norm_eps,
        )
        self.norm1_after = norm(sub_ln or post_norm)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2_before = norm(sub_ln or not post_norm)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, act_layer=act_layer)
        self.norm2_after = norm(sub_ln or post_norm)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))
        else:
            self.gamma1 = self.gamma2 = None

    def forward(
        self, x: torch.Tensor, H: int, W: int, z: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        a, z = self.attn(self.norm1_before(x), H, W, z)
        a = self.norm1_after(a)
        if self.gamma1 is not None:
            a = self.gamma1 * a
        x = add_to_fresh(self.drop_path1(a), x)
        m = self.norm2_after(self.mlp(self.norm2_before(x), H, W))
        if self.gamma2 is not None:
            m = self.gamma2 * m
        return add_to_fresh(self.drop_path2(m), x), z


# ----------------------------------------------------------------------------------------------------------
# External clustering teacher (ConvMixer + top-down FPN)
# ----------------------------------------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self, fn: nn.Module, drop_path: float = 0.0):
        super().__init__()
        self.fn = fn
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x):
        return add_to_fresh(self.drop_path(self.fn(x)), x)


def _convmixer_block(dim: int, kernel_size: int, act_layer, drop_path: float = 0.0) -> nn.Sequential:
    """Residual(DW kxk conv -> act -> BN) -> 1x1 conv -> act -> BN.

    The DW conv uses ``padding='same'`` like the official module (identical to k//2 for odd k). Note that
    fvcore does not count 'same'-padded convolutions (``aten::_convolution_mode``), neither here nor in the
    official code, so fvcore totals of the teacher variants omit these DW convs (0.078 GFLOPs at 224 for
    the tiny/small teacher) exactly as the official numbers do.
    """
    return nn.Sequential(
        _Residual(
            nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size, padding="same", groups=dim),
                FreshActivation(act_layer()),
                nn.BatchNorm2d(dim),
            ),
            drop_path,
        ),
        nn.Conv2d(dim, dim, 1),
        FreshActivation(act_layer()),
        nn.BatchNorm2d(dim),
    )


class BlurConv2d(nn.Module):
    """Anti-aliased strided conv: fixed [1 2 1]x[1 2 1]/16 depth-wise blur (stride 1, pad 1), then ``conv``.

    The blur kernel is kept in the persistent buffer ``blur_filter`` (C_in, 1, 3, 3) because the official
    checkpoints contain it.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 2, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding)
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("blur_filter", (torch.outer(k, k) / 16.0).expand(in_chs, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.blur_filter, stride=1, padding=1, groups=x.shape[1])
        return self.conv(x)


class PaCaTeacherConvMixer(nn.Module):
    """External clustering teacher: ConvMixer stages on the (shared) stem output, a top-down FPN, and a
    1x1 conv per stage to M cluster logits, softmax over the tokens.

    Returns (z, outs): z[i] (B, M_i, N_i) or None when M_i == 0, and the pre-FPN stage outputs as tokens
    (B, N_i, C_i) that the backbone adds to its own stage outputs.
    """

    def __init__(self, embed_dims: Sequence[int], num_clusters: Sequence[int], depths: Sequence[int],
                 kernel_size: int = 7, drop_path_rate: float = 0.0, act_layer=nn.GELU):
        super().__init__()
        self.num_stages = len(depths)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        cur = 0
        for i in range(self.num_stages):
            dim = embed_dims[i]
            setattr(self, f"block{i + 1}", nn.Sequential(
                *[_convmixer_block(dim, kernel_size, act_layer, dpr[cur + j]) for j in range(depths[i])]))
            if i < self.num_stages - 1:
                nxt = embed_dims[i + 1]
                setattr(self, f"transition{i + 1}",
                        nn.Sequential(BlurConv2d(dim, nxt, 3, 2, 1), FreshActivation(act_layer()), nn.BatchNorm2d(nxt)))
                setattr(self, f"lateral{i + 1}",
                        nn.Sequential(nn.Conv2d(nxt, dim, 1), FreshActivation(act_layer()), nn.BatchNorm2d(dim)))
                setattr(self, f"fpn{i + 1}", _convmixer_block(dim, kernel_size, act_layer, dpr[cur]))
            setattr(self, f"to_clusters{i + 1}", nn.Conv2d(dim, num_clusters[i], 1) if num_clusters[i] > 0 else None)
            cur += depths[i]
        channels_last_weights(self)  # its maps are channels-last in memory (the stem's tokens as a map)

    def forward(self, x: torch.Tensor) -> Tuple[List[Optional[torch.Tensor]], List[torch.Tensor]]:
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f"block{i + 1}")(x)
            outs.append(x)
            if i < self.num_stages - 1:
                x = getattr(self, f"transition{i + 1}")(x)
        fpn = [None] * self.num_stages
        fpn[-1] = outs[-1]
        for i in range(self.num_stages - 1, 0, -1):
            up = F.interpolate(fpn[i], size=outs[i - 1].shape[2:], mode="bilinear", align_corners=False)
            fpn[i - 1] = getattr(self, f"fpn{i}")(outs[i - 1] + getattr(self, f"lateral{i}")(up))
        zs: List[Optional[torch.Tensor]] = []
        for i in range(self.num_stages):
            to_clusters = getattr(self, f"to_clusters{i + 1}")
            zs.append(None if to_clusters is None else to_clusters(fpn[i]).flatten(2).softmax(dim=-1))
        return zs, [_map_to_tokens(o) for o in outs]


# ----------------------------------------------------------------------------------------------------------
# Stem / transitions
# ----------------------------------------------------------------------------------------------------------
class Downsample(nn.Module):
    """Stem (``patch_size=4``: two stacked 3x3/s2 convs, no activation) or transition (``patch_size=2``:
    one 3x3/s2 conv), followed by LayerNorm2d."""

    def __init__(self, in_chs: int, out_chs: int, patch_size: int, norm_eps: float = _NORM_EPS):
        super().__init__()
        if patch_size == 4:
            self.proj = nn.Sequential(
                nn.Conv2d(in_chs, out_chs // 2, 3, stride=2, padding=1),
                nn.Conv2d(out_chs // 2, out_chs, 3, stride=2, padding=1),
            )
        elif patch_size == 2:
            self.proj = nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1)
        else:
            raise ValueError(f"patch_size must be 2 or 4, got {patch_size}")
        self.norm = LayerNorm2d(out_chs, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------
class PaCaViT(nn.Module):
    """PaCa-ViT backbone and classifier.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: no head; ``forward`` then returns pooled features).
        global_pool: only ``'avg'`` (mean over tokens), as in the official model.
        embed_dims, depths, num_heads, mlp_ratios: per-stage widths, block counts, heads, MLP ratios.
        clustering: ``'conv'`` | ``'mlp'`` | ``'linear'`` | ``'teacher'`` (see the module docstring).
        num_clusters: clusters M per stage; 0 = plain self-attention in that stage.
        onsite_clustering: per stage (or one value): 0 stage-wise, 1 block-wise, i >= 2 every i blocks.
        clustering_kernel_size: DW kernel of the conv clustering, per stage or one value.
        cluster_norm: LayerNorm on the cluster tokens (official default True).
        cluster_pos_embed: learned (1, M, C) embedding added to the cluster tokens (official: off).
        teacher_depths: ConvMixer blocks per stage of the external teacher (``clustering='teacher'``).
        teacher_kernel_size, teacher_drop_path_rate: teacher DW kernel and stochastic depth (official 7, 0).
        teacher_add_outs: add the teacher's stage outputs to the backbone's before ``norm{i}`` (official True).
        layer_scale, post_norm, sub_ln: block options, off in the released models (see PaCaBlock).
        drop_rate: dropout before the classifier (not in the official model; default 0).
        proj_drop_rate: dropout after the attention projection and in the MLP (official ``drop``).
        attn_drop_rate: attention-probability dropout.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dims: Sequence[int] = (96, 192, 320, 384),
        depths: Sequence[int] = (2, 2, 4, 2),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        mlp_ratios: Union[float, Sequence[float]] = 4.0,
        clustering: str = "conv",
        num_clusters: Union[int, Sequence[int]] = (100, 100, 100, 0),
        onsite_clustering: Union[int, Sequence[int]] = 0,
        clustering_kernel_size: Union[int, Sequence[int]] = 7,
        cluster_norm: bool = True,
        cluster_pos_embed: bool = False,
        teacher_depths: Optional[Sequence[int]] = None,
        teacher_kernel_size: int = 7,
        teacher_drop_path_rate: float = 0.0,
        teacher_add_outs: bool = True,
        layer_scale: Optional[float] = None,
        post_norm: bool = False,
        sub_ln: bool = False,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_layer=nn.GELU,
        norm_eps: float = _NORM_EPS,
    ):
        super().__init__()
        n = len(depths)
        embed_dims = _per_stage(embed_dims, n, "embed_dims")
        num_heads = _per_stage(num_heads, n, "num_heads")
        mlp_ratios = _per_stage(mlp_ratios, n, "mlp_ratios")
        num_clusters = _per_stage(num_clusters, n, "num_clusters")
        onsite_clustering = _per_stage(onsite_clustering, n, "onsite_clustering")
        kernel_sizes = _per_stage(clustering_kernel_size, n, "clustering_kernel_size")
        if clustering not in CLUSTERING_TYPES:
            raise ValueError(f"clustering must be one of {CLUSTERING_TYPES}, got {clustering!r}")
        if any(m < 0 for m in num_clusters) or any(o < 0 for o in onsite_clustering):
            raise ValueError(f"num_clusters and onsite_clustering must be >= 0: {num_clusters}, {onsite_clustering}")
        if global_pool != "avg":
            raise ValueError(f"PaCaViT supports only global_pool='avg', got {global_pool!r}")
        use_teacher = clustering == "teacher"
        if use_teacher and teacher_depths is None:
            raise ValueError("clustering='teacher' needs teacher_depths (ConvMixer blocks per stage)")

        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_stages = n
        self.embed_dims = embed_dims
        self.num_clusters = num_clusters
        self.clustering = clustering
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.grad_checkpointing = False
        self.teacher_add_outs = teacher_add_outs
        self._kept_stages = n  # stages still present after prune_intermediate_layers

        self.patch_embed = Downsample(in_chans, embed_dims[0], patch_size=4, norm_eps=norm_eps)
        self.paca_teacher = (
            PaCaTeacherConvMixer(embed_dims, num_clusters, _per_stage(teacher_depths, n, "teacher_depths"),
                                 teacher_kernel_size, teacher_drop_path_rate, act_layer)
            if use_teacher else None
        )

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        cur = 0
        self.feature_info = []
        for i in range(n):
            blocks = nn.ModuleList()
            for j in range(depths[i]):
                if use_teacher and num_clusters[i] > 0:
                    onsite = False  # every block takes z from the teacher
                elif j == 0:
                    onsite = True
                elif onsite_clustering[i] < 2:
                    onsite = bool(onsite_clustering[i])
                else:
                    onsite = j % onsite_clustering[i] == 0
                blocks.append(PaCaBlock(
                    embed_dims[i], num_heads[i], num_clusters[i],
                    clustering=clustering if onsite else None,
                    clustering_kernel_size=kernel_sizes[i], mlp_ratio=mlp_ratios[i],
                    cluster_norm=cluster_norm, cluster_pos_embed=cluster_pos_embed,
                    drop_path=dpr[cur + j], attn_drop=attn_drop_rate, proj_drop=proj_drop_rate,
                    layer_scale=layer_scale, post_norm=post_norm, sub_ln=sub_ln,
                    act_layer=act_layer, norm_eps=norm_eps,
                ))
            cur += depths[i]
            setattr(self, f"stage{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=norm_eps))
            if i < n - 1:
                setattr(self, f"transition{i + 1}",
                        Downsample(embed_dims[i], embed_dims[i + 1], patch_size=2, norm_eps=norm_eps))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f"norm{i + 1}"))

        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        if not next(self.parameters()).is_meta:  # meta tensors hold no data: nothing to initialise
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------------------------------- timm API
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r"^patch_embed|^paca_teacher",
            blocks=r"^stage(\d+)" if coarse else [
                (r"^stage(\d+)\.(\d+)", None),
                (r"^(?:norm|transition)(\d+)", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool | str = True):
        enable = grad_checkpointing_mode(enable)
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        check_global_pool("PaCaViT", global_pool, ("avg",))  # forward_head always averages the tokens
        self.num_classes = num_classes
        self.head = linear_head(self.num_features, num_classes)

    def load_pretrained(self, path, checkpoint_key: Optional[str] = None):
        """Loads an official (``IMNET_224_<name>.pth``) or own checkpoint; mismatches raise
        CheckpointMismatchError naming the keys."""
        load_checkpoint(self, path, checkpoint_filter_fn, checkpoint_key=checkpoint_key)

    # ---------------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor):
        check_image_batch("PaCaViT", x, self.in_chans, MIN_INPUT_SIZE, "total stride 32", weight_dtype=next(self.parameters()).dtype)

    def _run_block(self, block: PaCaBlock, x, H: int, W: int, z):
        return run_block(block, x, H, W, z, checkpointed=self.grad_checkpointing)

    def _stages(self, x: torch.Tensor, last_stage: int) -> List[torch.Tensor]:
        """Runs stem (+ teacher) and stages 0..last_stage; returns every stage output as (B, C, H, W)."""
        self._check_input(x)
        x = self.patch_embed(x)
        zs, teacher_outs = None, None
        if self.paca_teacher is not None:
            if self.training and x.shape[0] * (-(-x.shape[2] // 8)) * (-(-x.shape[3] // 8)) < 2:
                raise ValueError("the ConvMixer teacher's BatchNorm needs more than one value per channel in "
                                 "training: use a batch of 2+ images or inputs of at least 64x64 pixels")
            zs, teacher_outs = self.paca_teacher(x)
            if not self.teacher_add_outs:
                teacher_outs = None
        outs = []
        for i in range(last_stage + 1):
            B, C, H, W = x.shape
            x = _map_to_tokens(x)
            z = zs[i] if zs is not None else None
            for block in getattr(self, f"stage{i + 1}"):
                x, z = self._run_block(block, x, H, W, z)
            if teacher_outs is not None:
                x = x + teacher_outs[i]
            x = _tokens_to_map(getattr(self, f"norm{i + 1}")(x), H, W)
            outs.append(x)
            if i < last_stage:
                x = getattr(self, f"transition{i + 1}")(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the normalized last-stage map (B, C, H/32, W/32)."""
        return self._stages(x, self._kept_stages - 1)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3)) if x.ndim == 4 else x
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (after the per-stage ``norm{i}``, strides 4/8/16/32). ``norm`` has no effect: every
        stage output is already normalized and there is no separate final norm."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(self._kept_stages, indices)
        last = max_index if (stop_early or intermediates_only) else self._kept_stages - 1
        outs = self._stages(x, last)
        intermediates = [outs[i] for i in take_indices]
        if output_fmt == "NHWC":
            intermediates = [y.permute(0, 2, 3, 1) for y in intermediates]
        if intermediates_only:
            return intermediates
        return outs[-1], intermediates

    def prune_intermediate_layers(
        self,
        indices: Union[int, List[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ):
        """Removes the stages after the last requested one (the teacher, if any, is kept whole: its
        top-down FPN needs all of its stages). ``prune_norm`` has no effect (the stage norms produce the
        features)."""
        take_indices, max_index = feature_take_indices(self._kept_stages, indices)
        for i in range(max_index + 1, self._kept_stages):
            delattr(self, f"stage{i + 1}")
            delattr(self, f"norm{i + 1}")
            delattr(self, f"transition{i}")
        pruned_end = max_index < self._kept_stages - 1
        self._kept_stages = max_index + 1
        if pruned_end:
            self.num_features = self.head_hidden_size = self.embed_dims[max_index]
        if prune_head or pruned_end:
            self.reset_classifier(0)
        return take_indices


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------
def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Maps an official PaCa-ViT state dict to this implementation.

    The module layout here is the official one (``patch_embed.proj.{0,1}``, ``stage{i}.{j}.attn.{q,k,v,proj}``,
    ``attn.clustering.clustering.{0,2,4}``, ``attn.cluster_norm``, ``mlp.dwconv.dwconv``, ``norm{i}``,
    ``transition{i}.{proj,norm}``, ``paca_teacher.*`` incl. the ``blur_filter`` buffers, ``head``), so the key
    mapping is the identity and official and own checkpoints are accepted alike. A container
    (``model``/``state_dict``/...) and ``module.`` prefixes are removed if still present, so the filter also
    serves timm's generic loader. Validation (missing / unexpected / mis-shaped keys) is the loader's
    (``models._checkpoint``). A first conv for another ``in_chans`` is adapted with timm's ``adapt_input_conv``.
    """
    out = dict(extract_state_dict(state_dict))
    own = model.state_dict()
    first = "patch_embed.proj.0.weight"
    if first in out and first in own and out[first].ndim == 4 and out[first].shape[1] != own[first].shape[1]:
        out[first] = adapt_input_conv(own[first].shape[1], out[first])
    return out


# ----------------------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------------------
def _cfg(**kwargs):
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "min_input_size": (3, MIN_INPUT_SIZE, MIN_INPUT_SIZE),
        "pool_size": (7, 7),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj.0",
        "classifier": "head",
        "custom_load": True,
        "license": "mit",
        "paper_ids": "arXiv:2203.11987",
        **kwargs,
    }


# Architectures (immutable: every builder makes its own dict, nothing is popped).
_ARCHS = {
    "tiny": (("embed_dims", (96, 192, 320, 384)), ("num_heads", (2, 4, 8, 16)), ("depths", (2, 2, 4, 2))),
    "small": (("embed_dims", (96, 192, 320, 384)), ("num_heads", (2, 4, 8, 16)), ("depths", (3, 3, 10, 3))),
    "base": (("embed_dims", (96, 192, 384, 512)), ("num_heads", (2, 4, 8, 16)), ("depths", (3, 3, 18, 3))),
    "tiny_teacher": (("embed_dims", (96, 192, 320, 384)), ("num_heads", (2, 4, 8, 16)),
                     ("depths", (2, 2, 2, 2)), ("teacher_depths", (2, 2, 2, 2))),
    "small_teacher": (("embed_dims", (96, 192, 320, 384)), ("num_heads", (2, 4, 8, 16)),
                      ("depths", (3, 3, 7, 3)), ("teacher_depths", (2, 2, 2, 2))),
    "base_teacher": (("embed_dims", (96, 192, 384, 512)), ("num_heads", (2, 4, 8, 16)),
                     ("depths", (3, 3, 16, 3)), ("teacher_depths", (2, 2, 4, 2))),
}

# name -> (arch, extra constructor args incl. official default drop_path_rate)
_VARIANTS = {
    "pacavit_tiny_p2cconv_100_0": ("tiny", dict(num_clusters=(100, 100, 100, 0), drop_path_rate=0.1)),
    "pacavit_small_p2cconv_100_0": ("small", dict(num_clusters=(100, 100, 100, 0), drop_path_rate=0.1)),
    "pacavit_base_p2cconv_100_0": ("base", dict(num_clusters=(100, 100, 100, 0), drop_path_rate=0.5)),
    "pacavit_small_p2cmlp_100_0": ("small", dict(clustering="mlp", num_clusters=(100, 100, 100, 0),
                                                 drop_path_rate=0.1)),
    "pacavit_small_p2cconv_2_0": ("small", dict(num_clusters=(2, 2, 2, 0), drop_path_rate=0.1)),
    "pacavit_small_p2cconv_49_0": ("small", dict(num_clusters=(49, 49, 49, 0), drop_path_rate=0.1)),
    "pacavit_small_p2cconv_49_100": ("small", dict(num_clusters=(49, 64, 81, 100), drop_path_rate=0.1)),
    "pacavit_small_p2cconv_100_49": ("small", dict(num_clusters=(100, 81, 64, 49), drop_path_rate=0.1)),
    "pacavit_small_p2cconv_100": ("small", dict(num_clusters=(100, 100, 100, 100), drop_path_rate=0.1)),
    "pacavit_small_p2cconv_100_blockwise": ("small", dict(num_clusters=(100, 100, 100, 100),
                                                          onsite_clustering=1, drop_path_rate=0.1)),
    "pacavit_convmixer_tiny_100": ("tiny_teacher", dict(clustering="teacher", num_clusters=100,
                                                        drop_path_rate=0.1)),
    "pacavit_convmixer_small_100": ("small_teacher", dict(clustering="teacher", num_clusters=100,
                                                          drop_path_rate=0.1)),
    "pacavit_convmixer_base_100": ("base_teacher", dict(clustering="teacher", num_clusters=100,
                                                        drop_path_rate=0.1)),
}
_ALIASES = {
    "pacavit_tiny": "pacavit_tiny_p2cconv_100_0",
    "pacavit_small": "pacavit_small_p2cconv_100_0",
    "pacavit_base": "pacavit_base_p2cconv_100_0",
}


def variant_args(name: str) -> dict:
    """Constructor arguments of a registered variant (a fresh dict)."""
    arch, extra = _VARIANTS[_ALIASES.get(name, name)]
    return dict(dict(_ARCHS[arch]), **extra)


default_cfgs = generate_default_cfgs({f"{name}.in1k": _cfg() for name in [*_VARIANTS, *_ALIASES]})


def _create_pacavit(variant: str, pretrained: bool = False, **kwargs) -> PaCaViT:
    return build_model(PaCaViT, variant, pretrained, filter_fn=checkpoint_filter_fn,
                       **dict(variant_args(variant), **kwargs))


@register_model
def pacavit_tiny_p2cconv_100_0(pretrained=False, **kwargs) -> PaCaViT:
    """Tiny, conv clustering, M = 100/100/100/0, stage-wise (12.20 M params)."""
    return _create_pacavit("pacavit_tiny_p2cconv_100_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100_0(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 100/100/100/0, stage-wise (22.04 M params)."""
    return _create_pacavit("pacavit_small_p2cconv_100_0", pretrained, **kwargs)


@register_model
def pacavit_base_p2cconv_100_0(pretrained=False, **kwargs) -> PaCaViT:
    """Base, conv clustering, M = 100/100/100/0, stage-wise, drop_path 0.5 (46.91 M params)."""
    return _create_pacavit("pacavit_base_p2cconv_100_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cmlp_100_0(pretrained=False, **kwargs) -> PaCaViT:
    """Small, MLP clustering, M = 100/100/100/0, stage-wise (22.64 M params)."""
    return _create_pacavit("pacavit_small_p2cmlp_100_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_2_0(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 2/2/2/0 (cluster-count ablation)."""
    return _create_pacavit("pacavit_small_p2cconv_2_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_49_0(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 49/49/49/0 (cluster-count ablation)."""
    return _create_pacavit("pacavit_small_p2cconv_49_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_49_100(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 49/64/81/100 (cluster-count ablation)."""
    return _create_pacavit("pacavit_small_p2cconv_49_100", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100_49(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 100/81/64/49 (cluster-count ablation)."""
    return _create_pacavit("pacavit_small_p2cconv_100_49", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 100 in all four stages."""
    return _create_pacavit("pacavit_small_p2cconv_100", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100_blockwise(pretrained=False, **kwargs) -> PaCaViT:
    """Small, conv clustering, M = 100 in all stages, block-wise (every block clusters)."""
    return _create_pacavit("pacavit_small_p2cconv_100_blockwise", pretrained, **kwargs)


@register_model
def pacavit_convmixer_tiny_100(pretrained=False, **kwargs) -> PaCaViT:
    """Tiny (depths 2/2/2/2) with an external ConvMixer clustering teacher (2/2/2/2), M = 100."""
    return _create_pacavit("pacavit_convmixer_tiny_100", pretrained, **kwargs)


@register_model
def pacavit_convmixer_small_100(pretrained=False, **kwargs) -> PaCaViT:
    """Small (depths 3/3/7/3) with an external ConvMixer clustering teacher (2/2/2/2), M = 100."""
    return _create_pacavit("pacavit_convmixer_small_100", pretrained, **kwargs)


@register_model
def pacavit_convmixer_base_100(pretrained=False, **kwargs) -> PaCaViT:
    """Base (depths 3/3/16/3) with an external ConvMixer clustering teacher (2/2/4/2), M = 100."""
    return _create_pacavit("pacavit_convmixer_base_100", pretrained, **kwargs)


@register_model
def pacavit_tiny(pretrained=False, **kwargs) -> PaCaViT:
    """Alias of pacavit_tiny_p2cconv_100_0."""
    return _create_pacavit("pacavit_tiny", pretrained, **kwargs)


@register_model
def pacavit_small(pretrained=False, **kwargs) -> PaCaViT:
    """Alias of pacavit_small_p2cconv_100_0."""
    return _create_pacavit("pacavit_small", pretrained, **kwargs)


@register_model
def pacavit_base(pretrained=False, **kwargs) -> PaCaViT:
    """Alias of pacavit_base_p2cconv_100_0."""
    return _create_pacavit("pacavit_base", pretrained, **kwargs)
