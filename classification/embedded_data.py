"""Embedded default dataset: a small, learnable, synthetic ImageNet-style image folder.

    from classification.embedded_data import ensure_embedded_dataset
    root = ensure_embedded_dataset()          # <repo root>/data/embedded_imagenet, generated on first use
    # root/train/<class>/*.png, root/val/<class>/*.png, root/meta.json

    python -m classification.embedded_data [--root DIR] [--force]   # prints where it is

What it is: 10 classes of rotated, scaled, translated shapes and textured shapes (disc, square,
triangle, plus, ring, hexagram, striped square, checkered square, crescent, square frame), each in a
random colour on a random two-tone gradient background with clutter (small dots, bars and thin lines in
random colours). Colours are drawn independently of the class, so the mean colour of an image carries
almost no class information; the class is in the shape and the texture. 160 train and 40 val images per
class at 64x64 px by default (~2,000 PNG files, a few MB, generated in seconds).

How it is made: pure numpy + PIL, no download. Every image has its own random generator seeded from
(seed, split, class, index), so the content does not depend on generation order. Shapes are rasterised by
exact inside tests on a 3x3 supersampled grid using only +, -, *, /, sqrt and comparisons (IEEE-exact
operations; the one rotation per shape uses two scalar `math.cos`/`math.sin` values rounded to 12
decimals), so the pixels are the same on every machine. meta.json stores a SHA-256 of the decoded pixels of
every split (machine-independent) next to the generator version, class names, counts and image size; PNG
bytes are identical wherever the same Pillow/zlib encodes them.

Concurrency: the dataset is written into a private temporary directory next to `root` and moved into
place with one `os.rename`, meta.json last, so a reader (or a racing process, e.g. torchrun ranks calling
this at once) never sees a half-written dataset: the loser of a race discards its copy and uses the
winner's. A dataset whose meta.json does not match the requested parameters (other version or size) is
replaced the same way. A directory at `root` that this module did not write is never deleted: that is an
error.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
import time
import uuid

import numpy as np
from PIL import Image

__all__ = [
    "CLASS_NAMES",
    "GENERATOR",
    "GENERATOR_VERSION",
    "default_root",
    "ensure_embedded_dataset",
    "generate_image",
    "read_meta",
]

GENERATOR = "classification.embedded_data"
GENERATOR_VERSION = 1
META_FILE = "meta.json"
SPLITS = ("train", "val")

# Directory names sort in class-index order, so torchvision's ImageFolder assigns label i to CLASS_NAMES[i].
CLASS_NAMES: tuple[str, ...] = (
    "c00_disc",
    "c01_square",
    "c02_triangle",
    "c03_plus",
    "c04_ring",
    "c05_hexagram",
    "c06_striped_square",
    "c07_checkered_square",
    "c08_crescent",
    "c09_square_frame",
)

_SS = 3  # supersampling factor per axis (anti-aliasing)
_SQRT3_2 = math.sqrt(3.0) / 2.0


def default_root() -> pathlib.Path:
    """`<repo root>/data/embedded_imagenet` (repo root = parent of the `classification` package)."""
    return pathlib.Path(__file__).resolve().parent.parent / "data" / "embedded_imagenet"


# --------------------------------------------------------------------------------------------- rendering
def _inside_triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Equilateral triangle with circumradius 1 (inradius 0.5), pointing up."""
    return (v <= 0.5) & (-_SQRT3_2 * u - 0.5 * v <= 0.5) & (_SQRT3_2 * u - 0.5 * v <= 0.5)


def _shape_masks(cls: int, u: np.ndarray, v: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(mask of colour A, mask of colour B or None) in normalised object coordinates (radius 1)."""
    rho2 = u * u + v * v
    au, av = np.abs(u), np.abs(v)
    if cls == 0:  # disc
        return rho2 <= 1.0, None
    if cls == 1:  # square
        return np.maximum(au, av) <= 0.8, None
    if cls == 2:  # triangle
        return _inside_triangle(u, v), None
    if cls == 3:  # plus
        return ((au <= 0.28) & (av <= 0.95)) | ((av <= 0.28) & (au <= 0.95)), None
    if cls == 4:  # ring
        return (rho2 <= 1.0) & (rho2 >= 0.55 * 0.55), None
    if cls == 5:  # hexagram: two triangles, one turned by 180 degrees
        return _inside_triangle(u, v) | _inside_triangle(u, -v), None
    if cls in (6, 7):  # striped / checkered square
        inside = np.maximum(au, av) <= 0.8
        fu = np.floor(u / period).astype(np.int64)
        if cls == 6:
            parity = fu % 2 == 0
        else:
            parity = (fu + np.floor(v / period).astype(np.int64)) % 2 == 0
        return inside & parity, inside & ~parity
    if cls == 8:  # crescent: disc minus a shifted disc
        du = u - 0.45
        return (rho2 <= 1.0) & (du * du + v * v > 0.8 * 0.8), None
    if cls == 9:  # square frame
        m = np.maximum(au, av)
        return (m <= 0.85) & (m >= 0.55), None
    raise ValueError(f"unknown class index {cls}")


def _colour(rng: np.random.Generator, avoid: list[np.ndarray] | None = None, min_dist: float = 0.0) -> np.ndarray:
    """Random RGB colour in [0, 1]^3, at least `min_dist` (Euclidean) from every colour in `avoid`."""
    for _ in range(100):
        c = rng.uniform(0.0, 1.0, size=3)
        if not avoid or all(float(np.sqrt(((c - a) ** 2).sum())) >= min_dist for a in avoid):
            return c
    return 1.0 - avoid[0]  # practically unreachable; deterministic fallback


def _window(size: int, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Pixel window covering [x0, x1] x [y0, y1] (pixel units) and its supersampled centre coordinates
    (x as a row, y as a column), or None when the window misses the image."""
    c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1) + 1, size)
    r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1) + 1, size)
    if c0 >= c1 or r0 >= r1:
        return None
    xs = (np.arange(c0 * _SS, c1 * _SS, dtype=np.float64) + 0.5) / _SS
    ys = (np.arange(r0 * _SS, r1 * _SS, dtype=np.float64) + 0.5) / _SS
    return slice(r0, r1), slice(c0, c1), xs[None, :], ys[:, None]


def _composite(img: np.ndarray, rows: slice, cols: slice, cover: np.ndarray, colour: np.ndarray) -> None:
    """img[rows, cols] <- img * (1 - a) + colour * a, a = the supersampled mask `cover` averaged per pixel."""
    h, w = rows.stop - rows.start, cols.stop - cols.start
    a = np.broadcast_to(cover, (h * _SS, w * _SS)).reshape(h, _SS, w, _SS).mean(axis=(1, 3))[..., None]
    sub = img[rows, cols]
    sub *= 1.0 - a
    sub += a * colour


def generate_image(cls: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One `size` x `size` RGB uint8 image of class `cls`, drawn with `rng`."""
    # background: two-tone linear gradient in a random direction (evaluated at pixel centres)
    c0 = _colour(rng)
    c1 = np.clip(c0 + rng.uniform(-0.3, 0.3, size=3), 0.0, 1.0)
    gx, gy = rng.uniform(-1.0, 1.0, size=2)
    p = np.arange(size, dtype=np.float64) + 0.5 - size / 2
    t = np.clip((gx * p[None, :] + gy * p[:, None]) / size + 0.5, 0.0, 1.0)[..., None]
    img = c0 * (1.0 - t) + c1 * t
    bg = (c0 + c1) / 2

    # clutter: small dots, bars and thin lines anywhere, in random colours
    for _ in range(int(rng.integers(3, 9))):
        kind = int(rng.integers(0, 3))
        cc = _colour(rng)
        px, py = rng.uniform(0, size, size=2)
        if kind == 0:  # dot
            r = rng.uniform(1.0, 2.5)
            win = _window(size, px - r, px + r, py - r, py + r)
            if win is None:
                continue
            rows, cols, x, y = win
            m = (x - px) ** 2 + (y - py) ** 2 <= r * r
        elif kind == 1:  # short axis-aligned bar
            hw, hh = rng.uniform(0.6, 4.0, size=2)
            win = _window(size, px - hw, px + hw, py - hh, py + hh)
            if win is None:
                continue
            rows, cols, x, y = win
            m = (np.abs(x - px) <= hw) & (np.abs(y - py) <= hh)
        else:  # thin line segment
            qx, qy = px + rng.uniform(-size / 3, size / 3), py + rng.uniform(-size / 3, size / 3)
            win = _window(size, min(px, qx) - 1, max(px, qx) + 1, min(py, qy) - 1, max(py, qy) + 1)
            if win is None:
                continue
            rows, cols, x, y = win
            dx, dy = qx - px, qy - py
            ll = dx * dx + dy * dy + 1e-9
            s = np.clip(((x - px) * dx + (y - py) * dy) / ll, 0.0, 1.0)
            ex, ey = x - (px + s * dx), y - (py + s * dy)
            m = ex * ex + ey * ey <= 0.6 * 0.6
        _composite(img, rows, cols, m, cc)

    # the object: random colour(s) that stand out from the background
    ca = _colour(rng, [bg], 0.45)
    cb = _colour(rng, [ca, bg], 0.35)
    radius = rng.uniform(0.2, 0.34) * size
    lo, hi = 0.5 * size - (0.5 * size - radius) * 0.8, 0.5 * size + (0.5 * size - radius) * 0.8
    cx, cy = rng.uniform(lo, hi, size=2)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    cos_t, sin_t = round(math.cos(theta), 12), round(math.sin(theta), 12)
    period = rng.uniform(0.22, 0.34)
    rows, cols, x, y = _window(size, cx - radius - 1, cx + radius + 1, cy - radius - 1, cy + radius + 1)
    dx, dy = (x - cx) / radius, (y - cy) / radius
    u = cos_t * dx + sin_t * dy
    v = -sin_t * dx + cos_t * dy
    ma, mb = _shape_masks(cls, u, v, period)
    _composite(img, rows, cols, ma, ca)
    if mb is not None:
        _composite(img, rows, cols, mb, cb)

    return np.clip(np.floor(img * 255.0 + 0.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- dataset layout
def _params(num_classes: int, train_per_class: int, val_per_class: int, image_size: int, seed: int) -> dict:
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "num_classes": num_classes,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "image_size": image_size,
        "seed": seed,
        "format": "png",
    }


def read_meta(root: str | os.PathLike) -> dict | None:
    """meta.json of a dataset written by this module, or None when there is none (or it is not ours)."""
    p = pathlib.Path(root) / META_FILE
    try:
        meta = json.loads(p.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR else None


def _matches(meta: dict | None, params: dict) -> bool:
    return meta is not None and all(meta.get(k) == v for k, v in params.items())


def _generate_into(out: pathlib.Path, params: dict) -> dict:
    """Write the whole dataset into the (empty) directory `out`; meta.json is written last."""
    size, seed = params["image_size"], params["seed"]
    counts: dict[str, dict[str, int]] = {}
    pixel_sha256: dict[str, str] = {}
    for split_id, split in enumerate(SPLITS):
        per_class = params["train_per_class"] if split == "train" else params["val_per_class"]
        h = hashlib.sha256()
        counts[split] = {}
        for cls in range(params["num_classes"]):
            d = out / split / CLASS_NAMES[cls]
            d.mkdir(parents=True)
            for i in range(per_class):
                rng = np.random.default_rng([seed, split_id, cls, i])
                arr = generate_image(cls, rng, size)
                h.update(arr.tobytes())
                Image.fromarray(arr, "RGB").save(d / f"{split}_{cls:02d}_{i:05d}.png", compress_level=6, optimize=False)
            counts[split][CLASS_NAMES[cls]] = per_class
        pixel_sha256[split] = h.hexdigest()
    meta = dict(params)
    meta.update(
        classes=list(CLASS_NAMES[: params["num_classes"]]),
        counts=counts,
        pixel_sha256=pixel_sha256,
        description="synthetic shapes/textures, random colours, position, scale, rotation and background clutter",
    )
    tmp_meta = out / (META_FILE + ".part")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_meta, out / META_FILE)
    return meta


def _discard(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def ensure_embedded_dataset(
    root: str | os.PathLike | None = None,
    *,
    num_classes: int = 10,
    train_per_class: int = 160,
    val_per_class: int = 40,
    image_size: int = 64,
    seed: int = 0,
    force: bool = False,
    verbose: bool = False,
) -> pathlib.Path:
    """Return the dataset root, generating the dataset there first unless a matching one exists.

    root: where the ImageFolder tree goes (default `default_root()`). Its parent is created if needed.
    num_classes (1..10), train_per_class, val_per_class, image_size (>= 16), seed: what to generate; a
    dataset at `root` written with other parameters or by another generator version is replaced.
    force: regenerate even if a matching dataset exists.
    Safe to call concurrently from several processes (see the module docstring).
    """
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in 1..{len(CLASS_NAMES)}, got {num_classes}")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"train_per_class and val_per_class must be >= 1, got {train_per_class}, {val_per_class}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 px, got {image_size}")
    root = pathlib.Path(default_root() if root is None else root).expanduser().resolve()
    params = _params(num_classes, train_per_class, val_per_class, image_size, seed)

    if not force and _matches(read_meta(root), params):
        return root
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"embedded dataset root {root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and read_meta(root) is None:
        raise FileExistsError(
            f"{root} exists, is not empty and holds no embedded dataset ({META_FILE} with generator "
            f"{GENERATOR!r}); refusing to overwrite it: pass another root or remove it"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); the dataset is meant to be shared
    try:
        _generate_into(tmp, params)
        for _attempt in range(10):
            try:
                os.rename(tmp, root)  # atomic; fails if root is a non-empty directory
                break
            except OSError:
                pass
            # root exists: a racing process may have just produced the same dataset
            if not force and _matches(read_meta(root), params):
                _discard(tmp)
                return root
            if root.is_dir() and any(root.iterdir()) and read_meta(root) is None:
                raise FileExistsError(f"{root} was filled by something else while generating the embedded dataset")
            # stale (other params / version, or force): move it aside atomically, then retry the rename
            trash = root.parent / f".{root.name}.old-{uuid.uuid4().hex}"
            try:
                os.rename(root, trash)
            except FileNotFoundError:
                pass  # someone else moved it already
            except OSError:
                try:  # an empty directory cannot always be renamed over; remove it instead
                    root.rmdir()
                except OSError:
                    pass
            else:
                _discard(trash)
            force = False  # once replaced, a matching dataset from a racing process is acceptable
        else:
            raise RuntimeError(f"could not move the generated embedded dataset into {root}")
    finally:
        if tmp.exists():
            _discard(tmp)
    if verbose:
        print(f"generated the embedded dataset in {root} ({time.perf_counter() - t0:.1f} s)")
    return root


def main(argv: list[str] | None = None) -> pathlib.Path:
    p = argparse.ArgumentParser(description="Generate (once) and locate the embedded default dataset.")
    p.add_argument("--root", default=None, help=f"dataset directory (default: {default_root()})")
    p.add_argument("--force", action="store_true", help="regenerate even if it exists")
    a = p.parse_args(argv)
    root = ensure_embedded_dataset(a.root, force=a.force, verbose=True)
    meta = read_meta(root)
    n_tr = sum(meta["counts"]["train"].values())
    n_va = sum(meta["counts"]["val"].values())
    print(f"embedded dataset: {root}")
    print(f"  {meta['num_classes']} classes, {n_tr} train / {n_va} val images, {meta['image_size']} px, "
          f"generator v{meta['version']}")
    return root


if __name__ == "__main__":
    main()
