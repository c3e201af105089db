"""PPMA's masked attention map on an image, next to the same block's attention without the mask.

For one full-attention block of a PPMA model (``ppma_probe.capture_block``) and every chosen query q, the
attention weights of q over all tokens, averaged over the heads, overlaid on the image:

- without the mask: ``softmax(S)[q]`` with the block's own scores S = q k^T (RoPE applied, k pre-scaled);
- with the polyline mask, as the block computes it: ``1/2 softmax(S + M)[q] + 1/2 softmax(S + M^T)[q]``
  (M from ``kernels.polyline_attention.polyline_mask``, the official "logits" placement);
- their difference (on the token grid), which is what the mask changes.

    python figures/plot_masked_attention.py [--model ppma_tiny] [--checkpoint best.pth] [--image photo.jpg] \
        [--size 224] [--stage 2] [--block 0] [--queries 0.35,0.5 0.8,0.2] [--out PNG]

Without ``--checkpoint`` the model has random weights (the title says so); without ``--image`` a photograph
shipped with matplotlib is used.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root and this folder importable
    sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(__file__)]

import ppma_probe  # noqa: E402
import torch  # noqa: E402
from plot_polyline_masks import DEFAULT_QUERIES, parse_queries  # noqa: E402


def attention_maps(probe: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) head-averaged attention without and with the polyline mask (rows: queries)."""
    from kernels.polyline_attention import polyline_mask

    if probe["mode"] != "full":
        raise ValueError(f"the block uses {probe['mode']!r} attention; pick a full-attention stage "
                         f"(PPMA-T: stages 2-3, S/B: stage 3)")
    q, k = (t.flatten(1, 2).double() for t in (probe["q"], probe["k"]))  # (n, N, d)
    s = q @ k.transpose(-1, -2)
    m = polyline_mask(probe["log_a"][None].double(), probe["log_b"][None].double())[0]  # (n, N, N)
    plain = s.softmax(-1)
    masked = 0.5 * (s + m).softmax(-1) + 0.5 * (s + m.transpose(-1, -2)).softmax(-1)
    return plain.mean(0), masked.mean(0)


def _overlay(ax, rgb, att, h, w, i, j):
    ax.imshow(rgb)
    ax.imshow(att.view(h, w).numpy(), cmap="inferno", alpha=0.65, extent=(0, rgb.shape[1], rgb.shape[0], 0),
              interpolation="nearest")
    ax.scatter([(j + 0.5) * rgb.shape[1] / w], [(i + 0.5) * rgb.shape[0] / h], c="cyan", marker="x", s=60)
    ax.axis("off")


def draw_attention(probe: dict, rgb, queries, title: str):
    """One row per query: image, attention without the mask, with it, and the difference; returns the Figure."""
    import matplotlib.pyplot as plt

    n, h, w = probe["log_a"].shape
    plain, masked = attention_maps(probe)
    fig, axes = plt.subplots(len(queries), 4, figsize=(13, 3.2 * len(queries)), squeeze=False)
    for r, frac in enumerate(queries):
        i, j = ppma_probe.query_index(frac, h, w)
        q = i * w + j
        axes[r, 0].imshow(rgb)
        axes[r, 0].scatter([(j + 0.5) * rgb.shape[1] / w], [(i + 0.5) * rgb.shape[0] / h], c="cyan", marker="x", s=60)
        axes[r, 0].set_title(f"query ({i}, {j}) on the {h}x{w} grid", fontsize=9)
        axes[r, 0].axis("off")
        _overlay(axes[r, 1], rgb, plain[q], h, w, i, j)
        axes[r, 1].set_title(f"without the mask: softmax(S)\nmax {plain[q].max():.3f}", fontsize=9)
        _overlay(axes[r, 2], rgb, masked[q], h, w, i, j)
        axes[r, 2].set_title(f"with the polyline mask (PPMA)\nmax {masked[q].max():.3f}", fontsize=9)
        diff = (masked[q] - plain[q]).view(h, w)
        lim = float(diff.abs().max())
        im = axes[r, 3].imshow(diff.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r, 3].scatter([j], [i], c="k", marker="x", s=60)
        axes[r, 3].set_title("with minus without\n(red: the mask adds weight)", fontsize=9)
        axes[r, 3].axis("off")
        fig.colorbar(im, ax=axes[r, 3], fraction=0.046)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def build_figure(model_name: str, checkpoint, image, size: int, stage: int, block: int, queries):
    model, weights = ppma_probe.load_model(model_name, checkpoint)
    x, rgb = ppma_probe.load_image(image or ppma_probe.default_image(), size)
    probe = ppma_probe.capture_block(model, x, stage, block)
    title = (f"PPMA attention of one query, mean over {probe['q'].shape[0]} heads: {weights};\n"
             f"input {size}x{size}; stage {stage} block {block}")
    return draw_attention(probe, rgb, queries, title)


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
    ap.add_argument("--queries", nargs="+", default=[f"{a},{b}" for a, b in DEFAULT_QUERIES])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppma_attention.png"))
    args = ap.parse_args(argv)
    fig = build_figure(args.model, args.checkpoint, args.image, args.size, args.stage, args.block,
                       parse_queries(args.queries))
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
