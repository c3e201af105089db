"""What the PPMA figures look inside: a model (trained or random), an image, and one attention block's tensors.

``capture_block`` runs the model once and returns, for one block, the queries and keys exactly as the
attention sees them (RoPE applied, k pre-scaled as in the official code) and the input-dependent log decays
``log_a`` / ``log_b`` from which the kernels build the polyline mask. Used by ``plot_polyline_masks.py`` and
``plot_masked_attention.py``.
"""
from __future__ import annotations

import pathlib

import numpy as np
import torch

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


def default_image() -> pathlib.Path:
    """A real photograph that ships with matplotlib (Grace Hopper, 512 x 600): no download, no extra package."""
    import matplotlib

    return pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def load_image(path: str | pathlib.Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """(1, 3, size, size) normalised input and the (size, size, 3) RGB in [0, 1] it was made from."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    side = min(im.size)  # centre crop to a square, then resize
    left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    rgb = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
    x = ((rgb - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None]
    return x, rgb.numpy()


def _num_classes(checkpoint: str) -> int:
    from models._checkpoint import extract_state_dict, read_checkpoint

    return extract_state_dict(read_checkpoint(checkpoint))["head.weight"].shape[0]


def load_model(name: str, checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    """The model in eval mode and a label saying which weights it has (RANDOM WEIGHTS without a checkpoint)."""
    import timm

    import models  # noqa: F401  (registers the models)

    if checkpoint is None:
        torch.manual_seed(0)
        return timm.create_model(name).eval(), f"{name}, RANDOM WEIGHTS (no checkpoint)"
    model = timm.create_model(name, num_classes=_num_classes(checkpoint), pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(checkpoint)))
    return model.eval(), f"{name}, weights {pathlib.Path(checkpoint).parent.name}/{pathlib.Path(checkpoint).name}"


def capture_block(model: torch.nn.Module, x: torch.Tensor, stage: int, block: int) -> dict:
    """q, k (n, H, W, d), log_a, log_b (n, H, W) and the block's mode for the first image of ``x``."""
    attn = model.layers[stage].blocks[block].retention
    if not hasattr(attn, "path_embed"):
        raise ValueError(f"{type(model).__name__} stage {stage} block {block} has no polyline mask (an RMT model?)")
    captured = {}

    def hook(module, args):
        x_in, sin, cos = args[:3]
        q, k, _, _ = module._qkv(x_in, sin, cos)
        log_a, log_b = module.path_embed(x_in)
        captured.update(q=q[0], k=k[0], log_a=log_a[0], log_b=log_b[0])

    handle = attn.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return dict(captured, mode=attn.mode)


def query_index(fraction: tuple[float, float], h: int, w: int) -> tuple[int, int]:
    """Token (i, j) of a query given as fractions (row, column) of the grid."""
    return min(h - 1, int(fraction[0] * h)), min(w - 1, int(fraction[1] * w))
