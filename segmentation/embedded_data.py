"""A tiny, deterministic ADE20K-style dataset, generated on first use (no download).

Layout and label convention as ADEChallengeData2016, so mmseg's ADE20K pipeline (``reduce_zero_label=True``)
reads it unchanged::

    <root>/images/{training,validation}/emb_XXXX.jpg
    <root>/annotations/{training,validation}/emb_XXXX.png    # uint8: 0 = unlabelled (-> ignore 255),
                                                              # 1..4 = the classes below (-> 0..3)

Each image is a textured background ("ground" below a horizon, "sky" above) with a few filled rectangles
("box") and discs ("disc"); every class has its own colour plus noise, so a small network learns it in a
few dozen iterations, and some pixels along the object borders are unlabelled (ignore index). Sizes vary
between 128 and 256 px so that resizing, cropping and padding are exercised. The files are written
atomically (``openmmlab.datasets.write_atomically``), so the ranks of a torchrun job can all call
:func:`generate`; a marker file written last tells a complete dataset.

    python -m segmentation.embedded_data [ROOT]    # default ROOT: <repo>/data/embedded_ade
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from openmmlab.datasets import generator_cli, write_atomically

CLASSES = ("sky", "ground", "box", "disc")
PALETTE = ((70, 130, 180), (140, 110, 60), (220, 40, 40), (40, 180, 60))
SPLITS = {"training": 16, "validation": 8}
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data" / "embedded_ade"
_DONE = "COMPLETE"
_SEED = 20240521


def _sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = (int(v) for v in rng.integers(128, 257, size=2))
    label = np.empty((h, w), np.uint8)
    horizon = int(rng.integers(h // 4, 3 * h // 4))
    label[:horizon] = 1  # sky
    label[horizon:] = 2  # ground
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h - 24)), int(rng.integers(0, w - 24))
        y1, x1 = y0 + int(rng.integers(16, h // 2)), x0 + int(rng.integers(16, w // 2))
        cv2.rectangle(label, (x0, y0), (min(x1, w - 1), min(y1, h - 1)), 3, thickness=-1)
    for _ in range(int(rng.integers(1, 3))):
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(label, center, int(rng.integers(10, min(h, w) // 4)), 4, thickness=-1)
    image = np.zeros((h, w, 3), np.float32)
    for cls, color in enumerate(PALETTE, start=1):
        image[label == cls] = color
    image += rng.normal(0.0, 18.0, size=image.shape)
    # unlabelled (0) one-pixel seams around objects, as ADE20K's annotations often have
    edges = cv2.morphologyEx(label, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    label[edges & (rng.random((h, w)) < 0.5)] = 0
    bgr = np.clip(image, 0, 255).astype(np.uint8)[..., ::-1]
    return np.ascontiguousarray(bgr), label


def is_complete(root: str | os.PathLike) -> bool:
    return (Path(root) / _DONE).is_file()


def _write(root: Path) -> None:
    rng = np.random.default_rng(_SEED)
    for split, count in SPLITS.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(count):
            image, label = _sample(rng)
            name = f"emb_{split[0]}{i:04d}"
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(root / "annotations" / split / f"{name}.png"), label)
    (root / _DONE).write_text("classes: " + ", ".join(CLASSES) + "\n")


def generate(root: str | os.PathLike = DEFAULT_ROOT, overwrite: bool = False) -> Path:
    """Writes the dataset to ``root`` (atomically) unless it is already there; returns ``root``."""
    return write_atomically(root, _write, is_complete, overwrite=overwrite)


def main(argv=None) -> None:
    generator_cli(generate, DEFAULT_ROOT, __doc__, argv)


if __name__ == "__main__":
    main()
