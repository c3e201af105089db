"""A tiny, deterministic COCO-format instance dataset for smoke runs and tests (no download).

``generate(root)`` writes::

    root/train/000000.jpg ...           24 images (default), about 256 px, RGB
    root/val/000000.jpg ...             8 images
    root/annotations/instances_train.json
    root/annotations/instances_val.json

Every image holds 1-4 filled shapes of three classes (``square``, ``disk``, ``triangle``) on a smooth
noisy background. Each instance has its box (``[x, y, w, h]``), its area (pixels of its visible mask) and an
instance mask: squares and triangles as polygons, disks as compressed RLE, so both COCO mask encodings
are exercised. Objects may overlap; later objects occlude earlier ones and the masks/boxes/areas of the
earlier ones are those of their visible pixels (polygons are then replaced by RLE).

The files are written atomically (``openmmlab.datasets.write_atomically``: a temporary sibling directory
renamed onto ``root``), so the ranks of a torchrun job can all call :func:`generate`. The content depends
only on ``seed`` and the sizes.

    python -m detection.embedded_data [ROOT]      # default ROOT: <repo>/data/embedded_coco
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util

from openmmlab.datasets import generator_cli, write_atomically

CLASSES = ("square", "disk", "triangle")
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data" / "embedded_coco"
SPLITS = ("train", "val")


def _background(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    c0, c1 = rng.randint(40, 216, size=(2, 3))
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    img = c0[None, None, :] * (1 - t) + c1[None, None, :] * t
    img = img + rng.normal(0.0, 8.0, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape(rng: np.random.RandomState, cls: str, h: int, w: int) -> np.ndarray:
    """Vertices (K, 2) of a polygon of class ``cls`` (a disk is a fine polygon used only for rasterizing)."""
    size = rng.uniform(0.18, 0.42) * min(h, w)
    cx, cy = rng.uniform(size / 2, w - size / 2), rng.uniform(size / 2, h - size / 2)
    if cls == "square":
        a = rng.uniform(0, np.pi / 2)
        angles = a + np.arange(4) * np.pi / 2 + np.pi / 4
        r = size / 2 * np.sqrt(2) * 0.8
    elif cls == "triangle":
        a = rng.uniform(0, 2 * np.pi)
        angles = a + np.arange(3) * 2 * np.pi / 3
        r = size / 2
    else:
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        r = size / 2
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)


def _image(rng: np.random.RandomState, image_id: int, size: int, ann_id: int):
    h = size + 16 * rng.randint(-2, 3)
    w = size + 16 * rng.randint(-2, 3)
    img = _background(rng, h, w)
    objects = []
    for _ in range(rng.randint(1, 5)):
        label = rng.randint(len(CLASSES))
        poly = _shape(rng, CLASSES[label], h, w)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        color = rng.randint(0, 256, size=3)
        img[mask.astype(bool)] = color
        for other in objects:  # occlusion: earlier objects lose the covered pixels
            if (other["mask"] & mask).any():
                other["mask"] = other["mask"] & (1 - mask)
                other["occluded"] = True
        objects.append(dict(label=label, poly=poly, mask=mask, occluded=False))
    anns = []
    for obj in objects:
        m = obj["mask"]
        area = int(m.sum())
        if area < 16:  # fully or almost fully hidden: not an annotated instance
            continue
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        if CLASSES[obj["label"]] == "disk" or obj["occluded"]:
            rle = mask_util.encode(np.asfortranarray(m))
            segmentation = {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}
        else:
            segmentation = [np.round(obj["poly"], 2).reshape(-1).tolist()]
        anns.append(dict(id=ann_id, image_id=image_id, category_id=obj["label"] + 1,
                         bbox=[x0, y0, x1 - x0, y1 - y0], area=area, iscrowd=0,
                         segmentation=segmentation))
        ann_id += 1
    return img, anns, ann_id


def _write_split(root: Path, split: str, num_images: int, size: int, rng: np.random.RandomState) -> None:
    (root / split).mkdir(parents=True)
    images, annotations, ann_id = [], [], 1
    for i in range(num_images):
        img, anns, ann_id = _image(rng, i + 1, size, ann_id)
        name = f"{i:06d}.jpg"
        if not cv2.imwrite(str(root / split / name), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {root / split / name}")
        images.append(dict(id=i + 1, file_name=name, height=int(img.shape[0]), width=int(img.shape[1])))
        annotations.extend(anns)
    coco = dict(
        info=dict(description="embedded tiny COCO-format dataset (generated by detection/embedded_data.py)"),
        images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(CLASSES)])
    (root / "annotations").mkdir(exist_ok=True)
    with open(root / "annotations" / f"instances_{split}.json", "w") as f:
        json.dump(coco, f)


def is_complete(root: str | os.PathLike) -> bool:
    root = Path(root)
    return all((root / "annotations" / f"instances_{s}.json").is_file() for s in SPLITS)


def generate(root: str | os.PathLike = DEFAULT_ROOT, num_train: int = 24, num_val: int = 8, size: int = 256,
             seed: int = 0, overwrite: bool = False) -> Path:
    """Writes the dataset to ``root`` (atomically) unless it is already there; returns ``root``."""
    if size < 64:
        raise ValueError(f"embedded dataset image size must be >= 64 px, got {size}")

    def write(tmp: Path) -> None:
        rng = np.random.RandomState(seed)
        for split, n in zip(SPLITS, (num_train, num_val)):
            _write_split(tmp, split, n, size, rng)

    return write_atomically(root, write, is_complete, overwrite=overwrite)


def main(argv=None) -> None:
    generator_cli(generate, DEFAULT_ROOT, __doc__, argv)


if __name__ == "__main__":
    main()
