"""Render learned PPMA polyline masks for chosen query positions.

For one attention block of a PPMA model, the decays of the input image are captured with a forward hook on
``path_embed``; for every chosen query (i, j) the two polyline masks are drawn over the block's token grid:
``exp(M[q, :])`` (horizontal along the query's row, then vertical), ``exp(M^T[q, :])`` (vertical first) and
their average (the effective prior of the official "logits" placement before renormalisation).

    python figures/plot_polyline_masks.py --model ppma_tiny --checkpoint best.pth --image cat.jpg \
        --stage 2 --block 0 --head 0 --queries 0.5,0.5 0.2,0.8 --out figures/polyline_masks.png

Without ``--checkpoint`` the model has random weights; without ``--image`` a smooth synthetic image is used.
Query positions are fractions (row, column) of the token grid. Needs matplotlib.
"""
from __future__ import annotations

import argparse
import os

import torch


def mask_rows(log_a: torch.Tensor, log_b: torch.Tensor, i: int, j: int):
    """(H, W) log-mask rows M[(i, j), :] and M^T[(i, j), :] of one head from its (H, W) log decays."""
    ca = torch.cumsum(log_a, -1)
    cb = torch.cumsum(log_b, -2)
    m = -(ca[i, j] - ca[i, :]).abs()[None, :] - (cb[i, :][None, :] - cb).abs()
    mt = -(ca - ca[:, j:j + 1]).abs() - (cb[:, j] - cb[i, j]).abs()[:, None]
    return m, mt


def _load_image(path, size):
    if path is None:
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size[0]), torch.linspace(-1, 1, size[1]), indexing="ij")
        img = torch.stack([torch.sin(3 * xx), torch.cos(2 * yy), xx * yy], 0)
        return img[None], img.permute(1, 2, 0).add(1).div(2).clamp(0, 1).numpy()
    from PIL import Image
    im = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.BICUBIC)
    x = torch.tensor(list(im.getdata()), dtype=torch.float32).view(size[0], size[1], 3) / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((x - mean) / std).permute(2, 0, 1)[None], x.numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ppma_tiny")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--image", default=None)
    ap.add_argument("--size", default="224x224", help="input HxW")
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--block", type=int, default=0)
    ap.add_argument("--head", type=int, default=0)
    ap.add_argument("--queries", nargs="+", default=["0.5,0.5", "0.25,0.75"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "polyline_masks.png"))
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import timm

    import models.ppma  # noqa: F401  (registers the models)

    kw = dict(pretrained=True, pretrained_cfg_overlay=dict(file=args.checkpoint)) if args.checkpoint else {}
    model = timm.create_model(args.model, **kw).eval()
    size = tuple(int(s) for s in args.size.split("x"))
    x, rgb = _load_image(args.image, size)
    captured = {}
    pe = model.layers[args.stage].blocks[args.block].retention.path_embed
    hook = pe.register_forward_hook(lambda m, inp, out: captured.update(decays=out))
    with torch.no_grad():
        model(x)
    hook.remove()
    log_a, log_b = (t[0, args.head].double() for t in captured["decays"])
    h, w = log_a.shape
    queries = [tuple(float(v) for v in q.split(",")) for q in args.queries]
    fig, axes = plt.subplots(len(queries), 4, figsize=(13, 3.2 * len(queries)), squeeze=False)
    for r, (fy, fx) in enumerate(queries):
        i, j = min(h - 1, int(fy * h)), min(w - 1, int(fx * w))
        m, mt = mask_rows(log_a, log_b, i, j)
        panels = [("image", None), ("exp(M): row, then column", m.exp()), ("exp(M^T): column, then row", mt.exp()),
                  ("mean of both", 0.5 * (m.exp() + mt.exp()))]
        for c, (title, val) in enumerate(panels):
            ax = axes[r, c]
            if val is None:
                ax.imshow(rgb)
                ax.scatter([(j + 0.5) * rgb.shape[1] / w], [(i + 0.5) * rgb.shape[0] / h], c="r", marker="x")
            else:
                im = ax.imshow(val.numpy(), cmap="viridis", vmin=0, vmax=1)
                ax.scatter([j], [i], c="r", marker="x")
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax.set_title(f"{title}\nquery ({i}, {j})" if c else f"{args.model} stage {args.stage} block "
                         f"{args.block} head {args.head}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} (grid {h}x{w})")


if __name__ == "__main__":
    main()
