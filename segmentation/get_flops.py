"""Parameters and FLOPs of a segmentation config's model (mmengine's analysis, fvcore conventions).

    python segmentation/get_flops.py CONFIG [CONFIG ...] [--shape 512 512] [--cfg-options k=v ...]

One multiply-add counts as one FLOP (fvcore / the papers' convention), batch 1, the whole segmentor
(backbone, neck, heads incl. the auxiliary head; the model's `_forward`, no resizing to the input size).
The custom ops are counted with their own handles: PPMA's polyline-path attention
(``kernels.polyline_attention.FVCORE_OP_HANDLES``) and Spatial-Mamba's selective scan / state fusion
(``models.spatial_mamba.flop_count_handles``). UperNet papers (Swin convention) quote FLOPs at 2048x512:
pass ``--shape 512 2048`` to compare with those.
"""
import argparse

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import DictAction
from mmengine.registry import init_default_scope
from torch import nn

from models.openmmlab_runtime import replace_sync_bn
from segmentation._launch import load_config


class _Logits(nn.Module):
    """The segmentor as a tensor -> tensor function (mmseg's ``EncoderDecoder._forward``)."""

    def __init__(self, segmentor):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, x):
        return self.segmentor._forward(x)


def op_handles() -> dict:
    from kernels.polyline_attention import FVCORE_OP_HANDLES
    from models.spatial_mamba import flop_count_handles

    return {**FVCORE_OP_HANDLES, **flop_count_handles()}


def complexity(config: str, shape=(512, 512), cfg_options=None) -> dict:
    """{'params': int, 'flops': float (FLOPs, batch 1), 'uncounted': {op: calls}} for ``config``."""
    from mmseg.registry import MODELS

    import models.openmmlab  # noqa: F401  (registers VisionBackbone / PaCaSegHead)

    cfg = load_config(config, cfg_options)
    replace_sync_bn(cfg.model)
    cfg.model.backbone.pop("init_cfg", None)  # weights do not change the count
    init_default_scope(cfg.get("default_scope", "mmseg"))
    model = MODELS.build(cfg.model).eval()
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(_Logits(model), (x,))
        analyzer.set_op_handle(**op_handles())
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
        uncounted = dict(analyzer.unsupported_ops())
    return dict(params=sum(p.numel() for p in model.parameters()), flops=float(flops), uncounted=uncounted)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="config files or names")
    parser.add_argument("--shape", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    h, w = args.shape
    print(f"{'config':<72} {'params':>10} {'GFLOPs@' + f'{h}x{w}':>16}")
    for config in args.configs:
        result = complexity(config, (h, w), args.cfg_options)
        print(f"{config:<72} {result['params'] / 1e6:>9.2f}M {result['flops'] / 1e9:>16.1f}")
        if result["uncounted"]:
            print(f"  not counted (no FLOP handle): {result['uncounted']}")


if __name__ == "__main__":
    main()
