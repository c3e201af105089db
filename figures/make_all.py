"""Regenerates every figure in figures/ from the data committed in this repository.

    python figures/make_all.py [--check] [--checkpoint PPMA_CKPT] [--official-logs LOG ...] [--only NAME ...]

| figure | drawn from |
|---|---|
| zoo.png | benchmarks/zoo.json (``python -m benchmarks.zoo``) |
| training_curves.png | training_logs/*/log.txt (+ ``--official-logs``, overlaid against the fraction of each run) |
| kernel_scaling.png | benchmarks/cpu_results/*.json (the benchmark scripts' ``--json``) + the newest GPU suite report in benchmarks/gpu_results/ |
| ppma_polyline_masks.png, ppma_attention.png | a PPMA-T checkpoint (see below) on a photograph shipped with matplotlib |

PPMA checkpoint: ``--checkpoint PATH`` (e.g. an official PPMA-T checkpoint), else the main job's output
``output/classification/ppma_tiny__ppma_tiny/best.pth`` (``torchrun --nproc_per_node=2 classification/main.py
--config configs/classification/ppma_tiny.yaml``, the embedded-data run of the README). Without either, the
two PPMA figures are not made (exit status 1) and the command to make the checkpoint is printed.

``--check`` renders every figure in memory and writes nothing (fast; the PPMA figures then use a randomly
initialised model when no checkpoint is found) and fails if a figure cannot be drawn or is missing from
figures/. Figures are small PNGs; the caption of each is in figures/README.md.
"""
from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import plot_kernel_scaling  # noqa: E402
import plot_masked_attention  # noqa: E402
import plot_polyline_masks  # noqa: E402
import plot_training_log  # noqa: E402
import plot_zoo  # noqa: E402

DEFAULT_CHECKPOINT = ROOT / "output" / "classification" / "ppma_tiny__ppma_tiny" / "best.pth"
TRAIN_COMMAND = "torchrun --nproc_per_node=2 classification/main.py --config configs/classification/ppma_tiny.yaml"
DPI = 90


class MissingInput(RuntimeError):
    """A figure's input is not there (the message says how to make it)."""


def zoo_figure(args):
    return plot_zoo.draw_zoo(json.loads((ROOT / "benchmarks" / "zoo.json").read_text()))


def embedded_logs() -> list[pathlib.Path]:
    """The classification runs in training_logs/ (one directory per run, its per-epoch log.txt)."""
    return sorted(ROOT.glob("training_logs/*/log.txt"))


def training_curves_figure(args):
    logs = embedded_logs()
    labels = [p.parent.name.split("__")[0] + " (embedded)" for p in logs]
    official = [pathlib.Path(p) for p in args.official_logs]
    return plot_training_log.draw_logs(
        logs + official, labels + [f"{p.stem} (official)" for p in official],
        title="Embedded-data runs of classification/main.py (training_logs/)" + (" and official logs" if official else ""),
        x_axis="progress" if official else "epoch", styles=["-"] * len(logs) + ["--"] * len(official))


def kernel_scaling_figure(args):
    results = ROOT / "benchmarks" / "cpu_results"
    return plot_kernel_scaling.build_figure(results / "bench_polyline_attention.json",
                                            results / "bench_selective_scan.json",
                                            plot_kernel_scaling.latest_gpu_report())


def ppma_checkpoint(args) -> str | None:
    if args.checkpoint:
        return args.checkpoint
    if DEFAULT_CHECKPOINT.is_file():
        return str(DEFAULT_CHECKPOINT)
    if args.check:
        return None  # rendering check only: a random model (the figure title says so)
    raise MissingInput(f"no PPMA checkpoint: pass --checkpoint PATH, or make the embedded-data one with "
                       f"`{TRAIN_COMMAND}` (writes {DEFAULT_CHECKPOINT.relative_to(ROOT)})")


def masks_figure(args):
    return plot_polyline_masks.build_figure("ppma_tiny", ppma_checkpoint(args), None, 224, stage=2, block=0, head=0,
                                            queries=plot_polyline_masks.DEFAULT_QUERIES)


def attention_figure(args):
    return plot_masked_attention.build_figure("ppma_tiny", ppma_checkpoint(args), None, 224, stage=2, block=0,
                                              queries=plot_polyline_masks.DEFAULT_QUERIES)


FIGURES = {
    "zoo.png": zoo_figure,
    "training_curves.png": training_curves_figure,
    "kernel_scaling.png": kernel_scaling_figure,
    "ppma_polyline_masks.png": masks_figure,
    "ppma_attention.png": attention_figure,
}


def small_png(fig) -> bytes:
    """The figure as a PNG with a 256-colour palette: a third of the RGBA size, the same to the eye."""
    from PIL import Image

    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=DPI)
    image = Image.open(raw).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                     dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


def render(name: str, args) -> int:
    """Draws one figure and saves it (or, with --check, renders it to memory); returns the PNG's size."""
    import matplotlib.pyplot as plt

    fig = FIGURES[name](args)
    try:
        png = small_png(fig)
    finally:
        plt.close(fig)
    if not args.check:
        (HERE / name).write_bytes(png)
    return len(png)


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="render every figure in memory, write nothing")
    ap.add_argument("--checkpoint", default=None, help="PPMA-T checkpoint for the PPMA figures")
    ap.add_argument("--official-logs", nargs="+", default=[], help="official per-epoch logs to overlay")
    ap.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=None, help="make only these figures")
    args = ap.parse_args(argv)
    failed = []
    for name in args.only or FIGURES:
        try:
            size = render(name, args)
        except MissingInput as e:
            print(f"{name}: NOT MADE: {e}", file=sys.stderr)
            failed.append(name)
            continue
        missing = args.check and not (HERE / name).is_file()
        if missing:
            failed.append(name)
        verb = "rendered" if args.check else "wrote"
        print(f"{verb} {name} ({size / 1024:.0f} KiB)" + (f" -- but figures/{name} is not committed" if missing else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
