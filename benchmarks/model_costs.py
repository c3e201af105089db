"""Params and fvcore FLOPs of the registered models, counted the way the papers count them.

Convention (fvcore, as every paper here): batch 1, one multiply-add = one FLOP, element-wise ops not counted;
this repository's custom ops through their fvcore handles (PPMA's polyline attention:
``kernels.polyline_attention.FVCORE_OP_HANDLES``; Spatial-Mamba's scan and state fusion:
``models.spatial_mamba.flop_count_handles()``).

- ``classification_gflops``: the whole classifier at 224 x 224, eval mode; Spatial-Mamba through
  ``models.spatial_mamba.count_flops`` (its official counter traces the train-mode graph).
- ``backbone_gflops``: the downstream backbone alone (``features_only``, four stages; with the official output
  norms for PPMA / RMT / Spatial-Mamba, as their task configs build it), eval mode, at the task tables' input
  sizes: 1280 x 800 (H x W, as ``detection/get_flops.py``) and 512 x 512. The task tables count whole
  detectors / segmentors; these columns are the backbone's share.
"""
from __future__ import annotations

import pathlib
import re

import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK_SHAPES = {"detection": (1280, 800), "segmentation": (512, 512)}
OUT_NORM_PREFIXES = ("ppma_", "rmt_", "spatial_mamba_")
_MODEL_NAME = re.compile(r"""model_name\s*=\s*['"](\w+)['"]""")


def custom_op_handles() -> dict:
    from kernels.polyline_attention import FVCORE_OP_HANDLES
    from models.spatial_mamba import flop_count_handles

    return {**FVCORE_OP_HANDLES, **flop_count_handles()}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fvcore_gflops(model: nn.Module, shape: tuple[int, int]) -> float:
    """fvcore GFLOPs of ``model`` (already in the wanted mode) on one random (1, 3, H, W) input."""
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        analysis = FlopCountAnalysis(model, torch.randn(1, 3, *shape)).set_op_handle(**custom_op_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total() / 1e9


def classification_gflops(name: str) -> float:
    import timm

    from models.spatial_mamba import count_flops

    model = timm.create_model(name)
    if name.startswith("spatial_mamba_"):
        return count_flops(model, (3, 224, 224))
    return fvcore_gflops(model.eval(), (224, 224))


def build_backbone(name: str) -> nn.Module:
    import timm

    kwargs = dict(out_norm=True) if name.startswith(OUT_NORM_PREFIXES) else {}
    return timm.create_model(name, features_only=True, out_indices=(0, 1, 2, 3), **kwargs).eval()


def backbone_gflops(name: str, shape: tuple[int, int]) -> float:
    return fvcore_gflops(build_backbone(name), shape)


def downstream_tasks() -> dict[str, tuple[str, ...]]:
    """{model: tasks} for every model a detection / segmentation row config uses (smoke and _base_ excluded)."""
    tasks: dict[str, set[str]] = {}
    for task in TASK_SHAPES:
        for path in sorted((ROOT / "configs" / task).rglob("*.py")):
            if {"_base_", "smoke"} & set(path.relative_to(ROOT / "configs" / task).parts):
                continue
            for name in _MODEL_NAME.findall(path.read_text()):
                tasks.setdefault(name, set()).add(task)
    return {name: tuple(t for t in TASK_SHAPES if t in found) for name, found in tasks.items()}
