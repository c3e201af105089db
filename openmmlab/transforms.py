"""Data transforms the papers' segmentation pipelines use and mmseg 1.x lacks (registered in mmseg's
TRANSFORMS when :mod:`openmmlab` is imported).

``AlignResize`` (P2T's test transform, written for mmseg 0.x): resize as ``Resize`` does, then stretch the
result so that both sides are multiples of ``size_divisor`` (rounding up), instead of padding. P2T's
Semantic FPN numbers were measured this way (``AlignResize(keep_ratio=True, size_divisor=32)``).
"""
import math

import mmcv
from mmcv.transforms import Resize
from mmseg.registry import TRANSFORMS

__all__ = ["AlignResize"]


@TRANSFORMS.register_module()
class AlignResize(Resize):
    """``Resize``, then a second resize of image and label map to the next multiples of ``size_divisor``."""

    def __init__(self, *args, size_divisor: int = 32, **kwargs):
        super().__init__(*args, **kwargs)
        if size_divisor < 1:
            raise ValueError(f"AlignResize: size_divisor must be >= 1, got {size_divisor}")
        self.size_divisor = size_divisor

    def _aligned(self, h: int, w: int) -> tuple:
        d = self.size_divisor
        return math.ceil(h / d) * d, math.ceil(w / d) * d

    def _resize_img(self, results: dict) -> None:
        super()._resize_img(results)
        img = results.get("img")
        if img is None:
            return
        h, w = img.shape[:2]
        ah, aw = self._aligned(h, w)
        if (ah, aw) != (h, w):
            img = mmcv.imresize(img, (aw, ah), interpolation=self.interpolation, backend=self.backend)
            w_scale, h_scale = results["scale_factor"]
            results["img"] = img
            results["img_shape"] = img.shape[:2]
            results["scale_factor"] = (w_scale * aw / w, h_scale * ah / h)

    def _resize_seg(self, results: dict) -> None:
        super()._resize_seg(results)
        seg = results.get("gt_seg_map")
        if seg is None:
            return
        ah, aw = self._aligned(*seg.shape[:2])
        if (ah, aw) != seg.shape[:2]:
            results["gt_seg_map"] = mmcv.imresize(seg, (aw, ah), interpolation="nearest", backend=self.backend)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", size_divisor={self.size_divisor})"
