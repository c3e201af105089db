"""Learned PPMA polyline masks for chosen query positions (the paper's mask visualisation).

For one attention block of a PPMA model the input-dependent decays of the image are captured
(``ppma_probe.capture_block``) and the block's dense log-mask M is built with the kernels' own
``kernels.polyline_attention.polyline_mask``. For every query (i, j) one row of panels: the image with the
query, ``exp(M[q, :])`` (path along the query's row, then along the key's column), ``exp(M^T[q, :])``
(column first) and their mean, the prior that the official "logits" placement multiplies into the two
softmaxes (before renormalisation). Values are in (0, 1]: 1 at the query, decaying along the paths.

    python figures/plot_polyline_masks.py [--model ppma_tiny] [--checkpoint best.pth] [--image photo.jpg] \
        [--size 224] [--stage 2] [--block 0] [--head 0] [--queries 0.35,0.5 0.8,0.2] [--out PNG]

Without ``--checkpoint`` the model has random weights (the title says so); without ``--image`` a photograph
shipped with matplotlib is used. Query positions are fractions (row, column) of the block's token grid.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root and this folder importable
    sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(__file__)]

import ppma_probe  # noqa: E402
import torch  # noqa: E402

DEFAULT_QUERIES = ((0.35, 0.5), (0.8, 0.2))


def mask_rows(log_a: torch.Tensor, log_b: torch.Tensor, head: int, i: int, j: int):
    """(H, W) rows ``M[q, :]`` and ``M^T[q, :]`` of one head's log-mask for the query q = (i, j)."""
    from kernels.polyline_attention import polyline_mask

    n, h, w = log_a.shape
    m = polyline_mask(log_a[None, head:head + 1].double(), log_b[None, head:head + 1].double())[0, 0]
    q = i * w + j
    return m[q].view(h, w), m[:, q].view(h, w)


def draw_masks(probe: dict, rgb, queries, head: int, title: str):
    """One row of four panels per query (see the module docstring); returns the Figure."""
    import matplotlib.pyplot as plt

    n, h, w = probe["log_a"].shape
    fig, axes = plt.subplots(len(queries), 4, figsize=(12, 3.1 * len(queries)), squeeze=False)
    for r, frac in enumerate(queries):
        i, j = ppma_probe.query_index(frac, h, w)
        m, mt = (t.exp() for t in mask_rows(probe["log_a"], probe["log_b"], head, i, j))
        axes[r, 0].imshow(rgb)
        axes[r, 0].scatter([(j + 0.5) * rgb.shape[1] / w], [(i + 0.5) * rgb.shape[0] / h], c="r", marker="x", s=60)
        axes[r, 0].set_title(f"query ({i}, {j}) on the {h}x{w} grid", fontsize=9)
        for c, (name, val) in enumerate((("exp(M): row, then column", m), ("exp(M^T): column, then row", mt),
                                         ("mean of both", 0.5 * (m + mt))), start=1):
            im = axes[r, c].imshow(val.numpy(), cmap="viridis", vmin=0, vmax=1)
            axes[r, c].scatter([j], [i], c="r", marker="x", s=60)
            axes[r, c].set_title(name, fontsize=9)
            fig.colorbar(im, ax=axes[r, c], fraction=0.046)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def build_figure(model_name: str, checkpoint, image, size: int, stage: int, block: int, head: int, queries):
    model, weights = ppma_probe.load_model(model_name, checkpoint)
    x, rgb = ppma_probe.load_image(image or ppma_probe.default_image(), size)
    probe = ppma_probe.capture_block(model, x, stage, block)
    title = (f"PPMA polyline masks: {weights}; input {size}x{size}; stage {stage} block {block} "
             f"({probe['mode']}) head {head}")
    return draw_masks(probe, rgb, queries, head, title)


def parse_queries(texts) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in q.split(",")) for q in texts]


def main(argv=None):
    import matplotlib

    matplotlib.use("Agg")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ppma_tiny")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--image", default=None)
    ap.add_argument("--size", type=int, default=224, help="input side (the image is centre-cropped to a square)")
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--block", type=int, default=0)
    ap.add_argument("--head", type=int, default=0)
    ap.add_argument("--queries", nargs="+", default=[f"{a},{b}" for a, b in DEFAULT_QUERIES])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppma_polyline_masks.png"))
    args = ap.parse_args(argv)
    fig = build_figure(args.model, args.checkpoint, args.image, args.size, args.stage, args.block, args.head,
                       parse_queries(args.queries))
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
