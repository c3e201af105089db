"""Parameters and FLOPs of a detector / segmentor config: the one FLOP helper of both task folders.

mmengine's ``FlopAnalyzer`` (fvcore's conventions, the tool behind mmdet's / mmseg's ``get_flops.py``): one
multiply-add is one FLOP, batch 1, eval mode, the model's ``mode='tensor'`` forward (detectors: backbone,
neck, RPN / dense heads and, for two-stage detectors, the RoI heads on the RPN's proposals; segmentors:
backbone, neck and decode head, without the training-only auxiliary head). The custom ops of ``models``
(PPMA's polyline-path attention, Spatial-Mamba's selective scan and state fusion) are counted by the handles
``models.flop_count_handles()`` provides; ops nothing counts (NMS, RoIAlign, element-wise ops) are listed.
No weights are loaded: the backbone's ``init_cfg`` is dropped.
"""
from __future__ import annotations

import importlib
from collections import Counter

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings
from torch import nn

from models import flop_count_handles

__all__ = ["analyze", "build_model", "count_flops"]


class _TensorMode(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a module of one tensor argument (for tracing)."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode="tensor")


def count_flops(module: nn.Module, inputs: tuple) -> dict:
    """{'flops', 'by_operator', 'unsupported'} of ``module(*inputs)`` with the custom-op handles."""
    with torch.no_grad():
        analyzer = FlopAnalyzer(module, inputs)
        analyzer.set_op_handle(**flop_count_handles())
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return dict(flops=analyzer.total(), by_operator=dict(analyzer.by_operator()),
                    unsupported=dict(Counter(analyzer.unsupported_ops())))


def build_model(cfg: Config, scope: str) -> nn.Module:
    """The config's model without pretrained weights, BN instead of SyncBN, in eval mode."""
    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get("default_scope", scope))
    cfg.model.backbone.pop("init_cfg", None)
    model = revert_sync_batchnorm(importlib.import_module(f"{scope}.registry").MODELS.build(cfg.model))
    model.init_weights()
    return model.eval()


def analyze(cfg: Config, scope: str, shape: tuple[int, int], data_samples) -> dict:
    """Params (whole model and backbone) and FLOPs at batch 1 and input ``shape`` (H, W)."""
    model = build_model(cfg, scope)
    result = count_flops(_TensorMode(model, data_samples), (torch.randn(1, 3, *shape),))
    return dict(result, params=parameter_count(model)[""], backbone_params=parameter_count(model.backbone)[""])
