"""The model zoo as a picture: the papers' ImageNet top-1 against measured throughput and against FLOPs.

    python figures/plot_zoo.py [--zoo benchmarks/zoo.json] [--out figures/zoo.png]

Reads what ``python -m benchmarks.zoo`` wrote (one record per model) and draws two panels, one marker per
model: top-1 vs inference images/s (as measured in that run, on its device, batch and threads) and top-1 vs
fvcore GFLOPs at 224. Families in distinct colours; RMT (PPMA's baselines) in PPMA's colour and PaCa-ViT-S's
cluster ablations in PaCa's, with hollow markers (the ablations unlabelled). Models without a published top-1 are left out (named in the caption line of the figure).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAMILY_STYLE = {  # family label in zoo.json -> (colour, marker, filled)
    "PPMA": ("tab:red", "o", True),
    "RMT (PPMA's baselines)": ("tab:red", "o", False),
    "P2T": ("tab:blue", "s", True),
    "PaCa-ViT": ("tab:green", "^", True),
    "PaCa-ViT-S ablations": ("tab:green", "^", False),
    "MPViT": ("tab:purple", "D", True),
    "Spatial-Mamba": ("tab:orange", "P", True),
}
_PREFIXES = ("ppma_", "rmt_", "p2t_", "pacavit_", "mpvit_", "spatial_mamba_")
PACA_MAIN = ("pacavit_small_p2cconv_100_0", "pacavit_small_p2cmlp_100_0")


def style_key(row: dict) -> str:
    """The row's entry in FAMILY_STYLE: its family, or the PaCa-S cluster ablations (hollow, unlabelled)."""
    name = row["model"]
    if name.startswith("pacavit_small_p2cconv") and name not in PACA_MAIN:
        return "PaCa-ViT-S ablations"
    return row["family"]


def short_name(model: str) -> str:
    """Point label: the name without its family prefix (``pacavit_small_p2cconv_49_0`` -> ``small_p2cconv_49_0``)."""
    return next((model[len(p):] for p in _PREFIXES if model.startswith(p)), model)


def _panel(ax, rows, x_key, xlabel):
    seen = set()
    for r in rows:
        key = style_key(r)
        colour, marker, filled = FAMILY_STYLE[key]
        label = None if key in seen else key
        seen.add(key)
        x, y = x_key(r), r["paper"]["top1"]
        ax.scatter([x], [y], c=colour if filled else "none", edgecolors=colour, marker=marker, s=42, label=label)
        if key != "PaCa-ViT-S ablations":  # six points within 0.8 % top-1: labels would overlap
            ax.annotate(short_name(r["model"]), (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    from matplotlib.ticker import FormatStrFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # plain numbers, not 2x10^0
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ImageNet-1K top-1, paper (%)")
    ax.grid(True, which="both", alpha=0.3)


def draw_zoo(zoo: dict):
    """The two panels as a matplotlib Figure (not saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = zoo["meta"]
    ok = [r for r in zoo["models"] if "error" not in r]
    rows = [r for r in ok if r["paper"]["top1"] is not None]
    if not rows:
        raise ValueError("the zoo has no measured model with a published top-1")
    fig, (ax_speed, ax_flops) = plt.subplots(1, 2, figsize=(12, 5.2))
    where = meta["machine"].get("gpu", f"CPU ({meta['machine']['cpu']}), {meta['threads']} threads")
    _panel(ax_speed, rows, lambda r: r["infer"]["img_s"], f"inference images/s, fp32, batch {meta['batch']}, {where}")
    _panel(ax_flops, rows, lambda r: r["gflops_224"], "GFLOPs at 224x224 (fvcore, ours)")
    ax_flops.legend(fontsize=8, loc="lower right")
    left_out = sorted({r["model"] for r in ok} - {r["model"] for r in rows})
    note = f"; no published top-1: {', '.join(left_out)}" if left_out else ""
    fig.suptitle(f"Model zoo ({meta['date_utc']}, `{meta['command']}`){note}", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=str(ROOT / "benchmarks" / "zoo.json"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo.png"))
    args = ap.parse_args(argv)
    fig = draw_zoo(json.loads(pathlib.Path(args.zoo).read_text()))
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
