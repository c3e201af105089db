"""Parameters and FLOPs of a detector config, with mmengine's fvcore-style analysis (the tool behind mmdet's
``tools/analysis_tools/get_flops.py``).

    python detection/get_flops.py CONFIG [CONFIG ...] [--shape 1280 800] [--cfg-options KEY=VALUE ...]

Convention (as the papers' mmdet tools): batch 1, an input of ``--shape H W`` (default 1280 x 800, mmdet 2.x's
order), the model in eval mode run in mmdet's ``tensor`` mode: backbone, neck and RPN/RetinaNet heads; for
two-stage detectors the box head on the RPN's (up to 1000) proposals and the mask head on the first 100 of
them. One multiply-add counts as one FLOP (fvcore). Our custom ops are counted through their fvcore handles
(PPMA's polyline-path attention: ``kernels.polyline_attention.FVCORE_OP_HANDLES``; Spatial-Mamba's selective
scan and state fusion: ``models.spatial_mamba.flop_count_handles()``, which also skips the element-wise ops
its official counter skips). Ops no handle covers (NMS, RoIAlign, element-wise ops) are listed, not counted.
No weights are loaded: the backbone's ``init_cfg`` is dropped.

Each config prints one line ``config | params (M) | FLOPs (G) | paper params / FLOPs``; the paper values come
from the config's ``paper-row`` comment block.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

if __package__ in (None, ""):  # `python detection/get_flops.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings
from torch import nn

from detection.config_table import parse_paper_row


def custom_op_handles() -> dict:
    """fvcore handles for the custom ops of this repository's backbones (qualified op name -> handle)."""
    from kernels.polyline_attention import FVCORE_OP_HANDLES
    from models.spatial_mamba import flop_count_handles

    return {**FVCORE_OP_HANDLES, **flop_count_handles()}


class _TensorMode(nn.Module):
    """``detector(inputs, data_samples, mode='tensor')`` as a module of one tensor argument (for tracing)."""

    def __init__(self, detector: nn.Module, data_samples: list):
        super().__init__()
        self.detector = detector
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.detector(inputs, self.data_samples, mode="tensor")


def build_detector(cfg: Config) -> nn.Module:
    from mmdet.registry import MODELS

    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get("default_scope", "mmdet"))
    cfg.model.backbone.pop("init_cfg", None)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    return model.eval()


def analyze(cfg: Config, shape=(1280, 800)) -> dict:
    """Params (of the whole detector) and FLOPs at batch 1 and input ``shape`` (H, W)."""
    from mmdet.structures import DetDataSample

    model = build_detector(cfg)
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0))
    inputs = torch.randn(1, 3, h, w)
    wrapped = _TensorMode(model, [DetDataSample(metainfo=meta)])
    with torch.no_grad():
        analyzer = FlopAnalyzer(wrapped, (inputs,))
        analyzer.set_op_handle(**custom_op_handles())
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
        unsupported = Counter(analyzer.unsupported_ops())
        by_operator = dict(analyzer.by_operator())
    return dict(params=parameter_count(model)[""], flops=flops, unsupported=dict(unsupported), by_operator=by_operator,
                backbone_params=parameter_count(model.backbone)[""])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Parameters and FLOPs of detector configs")
    parser.add_argument("configs", nargs="+", help="config files")
    parser.add_argument("--shape", type=int, nargs="+", default=[1280, 800], help="input H W (or one side)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries")
    parser.add_argument("--show-unsupported", action="store_true", help="list the ops no handle counts")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    MMLogger.get_instance("detection.get_flops", log_level="WARNING")  # no per-parameter init_weights log
    shape = tuple(args.shape) * 2 if len(args.shape) == 1 else tuple(args.shape)
    if len(shape) != 2:
        raise ValueError(f"--shape takes H W or one side, got {args.shape}")
    print(f"input 1x3x{shape[0]}x{shape[1]}; FLOPs = fvcore multiply-adds; paper values from the config comments")
    for path in args.configs:
        cfg = Config.fromfile(path)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        res = analyze(cfg, shape)
        paper = parse_paper_row(path) or {}
        print(f"{path} | params {res['params'] / 1e6:.2f} M (backbone {res['backbone_params'] / 1e6:.2f} M) | "
              f"FLOPs {res['flops'] / 1e9:.1f} G | paper {paper.get('params (M)', '-')} M / "
              f"{paper.get('FLOPs (G)', '-')} G", flush=True)
        if args.show_unsupported:
            print("  not counted:", ", ".join(f"{k} x{v}" for k, v in sorted(res["unsupported"].items())))


if __name__ == "__main__":
    main()
