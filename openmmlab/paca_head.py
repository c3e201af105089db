"""The PaCa-ViT segmentation decode head for mmsegmentation 1.x (mmseg has none).

Registered in mmseg's MODELS registry when :mod:`openmmlab` is imported (configs ``custom_imports`` it).

``PaCaSegHead`` (PaCa-ViT, CVPR 2023, "patch-to-cluster attention" head; the official type name) with
``C_i`` the backbone widths, ``Cd = channels``, ``K = num_classes`` clusters (one per class) and ``N`` the
pixels of the stride-4 grid:

1. ``F_i = convs[i](x_i)`` (1x1 conv + BN + ReLU, C_i -> Cd), each resized bilinearly to the stride-4 size,
   concatenated: ``X`` (B, 4Cd, H, W).
2. Queries ``q = q[0](X)`` (1x1 conv + BN + ReLU, 4Cd -> Cd), flattened to (B, N, Cd).
3. Cluster logits ``S = clustering(X)`` (1x1 conv + BN + ReLU, 4Cd -> Cd, then 1x1 conv Cd -> K with bias),
   (B, K, H, W). ``Z = softmax_N(S)``: every cluster is a convex combination of all pixels.
4. Cluster features ``P = Z X`` (B, K, 4Cd).
5. ``k = ReLU(BN(Linear(P)))`` and ``v`` likewise (separate weights); BN normalises each of the Cd channels
   over the B*K cluster tokens.
6. ``A = softmax_K(q k^T)``: a single head, no 1/sqrt(d) scaling (as the official head).
7. ``O = A v`` back to (B, Cd, H, W) -> ``proj`` (1x1 conv + BN + ReLU) -> dropout + ``conv_seg``: the logits.
8. Training adds an auxiliary cross-entropy on ``S`` (bilinearly resized to the label size), weight 0.4 in
   the papers' configs (``aux_loss_decode``), logged as ``decode.paca.loss_ce`` / ``decode.paca.acc_seg``.
   The official code returns the two loss dicts from the head and needs its own ``PaCaEncoderDecoder`` to
   prefix them (``decode.*`` / ``paca.*``); here the head returns one dict, so mmseg's plain
   ``EncoderDecoder`` trains it. Inference returns the logits only.

Module names equal the official ones (``convs.{i}``, ``q.0``, ``clustering.{0,1}``, ``k.{0,2}``, ``v.{0,2}``,
``proj``, ``conv_seg``), so the ``decode_head.*`` keys of the official PaCa segmentor checkpoints load as they
are. The k/v norm follows ``norm_cfg`` (the official code hard-codes ``nn.SyncBatchNorm``): SyncBN gives
``nn.SyncBatchNorm``, any other BN a ``BatchNorm1d`` (same parameters and buffers).
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_activation_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, SampleList
from torch import Tensor

__all__ = ["PaCaSegHead"]


class _SwapLastDims(nn.Module):
    """(B, M, C) <-> (B, C, M), so that a BatchNorm1d normalises channels over the cluster tokens."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)


def _cluster_norm(norm_cfg, channels: int) -> nn.Module:
    """BN over (B, C, M) cluster tokens: SyncBatchNorm for ``SyncBN`` configs, BatchNorm1d for other BNs."""
    norm_type = (norm_cfg or {}).get("type", "SyncBN")
    if norm_type == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm_type in ("BN", "BN1d", "BN2d", "BN3d"):
        return nn.BatchNorm1d(channels)
    raise ValueError(f"PaCaSegHead: norm_cfg type {norm_type!r} is not supported for the cluster k/v "
                     f"projections (use 'SyncBN' or 'BN')")


@MODELS.register_module()
class PaCaSegHead(BaseDecodeHead):
    """Patch-to-cluster attention segmentation head (PaCa-ViT), exact to the official ``PaCaSegHead``.

    Args:
        interpolate_mode (str): mode used to resize every level to the stride-4 grid. Default: 'bilinear'.
        aux_loss_decode (dict): loss on the cluster logits ``S`` (one cluster per class). Default: cross
            entropy with weight 0.4 (the papers' configs add ``avg_non_ignore=True``).
        aux_prefix (str): prefix of the auxiliary loss names in the returned dict. Default: 'paca'.
        **kwargs: :class:`BaseDecodeHead` arguments (``in_channels`` as a list, one per level,
            ``in_index``, ``channels``, ``num_classes``, ``norm_cfg``, ``dropout_ratio``, ``loss_decode``...).
            ``input_transform`` is always 'multiple_select'.
    """

    def __init__(self, interpolate_mode: str = "bilinear",
                 aux_loss_decode: dict = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
                 aux_prefix: str = "paca", **kwargs):
        if kwargs.setdefault("input_transform", "multiple_select") != "multiple_select":
            raise ValueError("PaCaSegHead uses every selected level: input_transform must be 'multiple_select'")
        if not isinstance(kwargs.get("in_channels"), Sequence):
            raise ValueError("PaCaSegHead: in_channels must be a list with one width per backbone level")
        super().__init__(**kwargs)
        if not isinstance(aux_loss_decode, dict):
            raise TypeError(f"aux_loss_decode must be a dict, got {type(aux_loss_decode).__name__}")
        self.interpolate_mode = interpolate_mode
        self.aux_prefix = aux_prefix
        levels, cd = len(self.in_channels), self.channels

        def conv1x1(c_in, c_out):
            return ConvModule(c_in, c_out, 1, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        def cluster_projection():
            # indices 0 (Linear) and 2 (BN) carry the official checkpoint keys k.{0,2} / v.{0,2}
            return nn.Sequential(nn.Linear(levels * cd, cd), _SwapLastDims(), _cluster_norm(self.norm_cfg, cd),
                                 _SwapLastDims(), build_activation_layer(self.act_cfg))

        self.convs = nn.ModuleList(conv1x1(c, cd) for c in self.in_channels)
        self.q = nn.Sequential(conv1x1(levels * cd, cd))
        self.clustering = nn.Sequential(conv1x1(levels * cd, cd), nn.Conv2d(cd, self.num_classes, 1))
        self.k = cluster_projection()
        self.v = cluster_projection()
        self.proj = conv1x1(cd, cd)
        self.aux_loss_decode = MODELS.build(aux_loss_decode)

    def _forward(self, inputs) -> Tuple[Tensor, Tensor]:
        """Returns (segmentation logits, cluster logits S), both (B, K, H/4, W/4)."""
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        x = torch.cat([resize(conv(f), size=size, mode=self.interpolate_mode, align_corners=self.align_corners)
                       for conv, f in zip(self.convs, inputs)], dim=1)                       # B, 4Cd, H, W
        b, _, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)                                             # B, N, Cd
        cluster_logits = self.clustering(x)                                                  # B, K, H, W
        z = cluster_logits.flatten(2).softmax(dim=-1)                                        # B, K, N
        clusters = z @ x.flatten(2).transpose(1, 2)                                          # B, K, 4Cd
        k, v = self.k(clusters), self.v(clusters)                                            # B, K, Cd
        attn = (q @ k.transpose(1, 2)).softmax(dim=-1)                                       # B, N, K
        out = (attn @ v).transpose(1, 2).reshape(b, self.channels, h, w)
        return self.cls_seg(self.proj(out)), cluster_logits

    def forward(self, inputs) -> Tensor:
        return self._forward(inputs)[0]

    def loss(self, inputs: Tuple[Tensor], batch_data_samples: SampleList, train_cfg: ConfigType) -> dict:
        seg_logits, cluster_logits = self._forward(inputs)
        losses = self.loss_by_feat(seg_logits, batch_data_samples)
        aux = self.aux_loss_by_feat(cluster_logits, batch_data_samples)
        losses.update({f"{self.aux_prefix}.{name}": value for name, value in aux.items()})
        return losses

    def aux_loss_by_feat(self, cluster_logits: Tensor, batch_data_samples: SampleList) -> dict:
        """Cross-entropy of the cluster logits against the labels (cluster k = class k)."""
        seg_label = self._stack_batch_gt(batch_data_samples)
        cluster_logits = resize(cluster_logits, size=seg_label.shape[2:], mode="bilinear",
                                align_corners=self.align_corners)
        weight = self.sampler.sample(cluster_logits, seg_label) if self.sampler is not None else None
        seg_label = seg_label.squeeze(1)
        loss_fn = self.aux_loss_decode
        return {loss_fn.loss_name: loss_fn(cluster_logits, seg_label, weight=weight, ignore_index=self.ignore_index),
                "acc_seg": accuracy(cluster_logits, seg_label, ignore_index=self.ignore_index)}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", clusters={self.num_classes}"
