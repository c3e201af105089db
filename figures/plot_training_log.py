"""Training curves from per-epoch JSON-lines classification logs (the DeiT `log.txt` format).

    python figures/plot_training_log.py LOG [LOG ...] [--labels A B ...] [--out figures/curves.png]

Each line of a log is one JSON object per epoch with at least `epoch`, `train_lr`, `train_loss`, `test_loss`,
`test_acc1` (accuracies in percent); `n_parameters`, `test_acc5` and the EMA keys `test_ema_loss`,
`test_ema_acc1`, `test_ema_acc5` are optional. This is what `classification/main.py` writes to
`<output_dir>/log.txt` and what the official PPMA / RMT / DeiT-style repositories publish, so any such log can be
given by path. Four panels: train loss, test loss, test top-1 (+ EMA top-1, dotted, when the log has it) and
the learning rate, against the epoch; several logs are overlaid (one colour per log).

Importable: `load_log(path) -> list[dict]` validates a log and raises `LogFormatError` naming the file and the
line number of the first problem.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys

REQUIRED_KEYS = ("epoch", "train_lr", "train_loss", "test_loss", "test_acc1")
OPTIONAL_KEYS = ("n_parameters", "test_acc5", "test_ema_loss", "test_ema_acc1", "test_ema_acc5")
OFFICIAL_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


class LogFormatError(ValueError):
    """A file that is not a per-epoch JSON-lines training log (the message names the file and line)."""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_log(path: str | os.PathLike) -> list[dict]:
    """Reads one per-epoch JSON-lines log; returns its records (blank lines skipped) in file order.

    Each record must be a JSON object with the REQUIRED_KEYS, numeric values for every official key it has,
    an integer epoch, and epochs strictly increasing. Extra keys are kept (they are not plotted).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise LogFormatError(f"{path}: no such log file")
    records: list[dict] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            where = f"{path}, line {lineno}"
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                snippet = text if len(text) <= 80 else text[:77] + "..."
                raise LogFormatError(f"{where}: not a JSON object ({e.msg}): {snippet!r}") from None
            if not isinstance(rec, dict):
                raise LogFormatError(f"{where}: expected a JSON object per line, got {type(rec).__name__}")
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise LogFormatError(f"{where}: missing key(s) {missing} (a per-epoch log needs {list(REQUIRED_KEYS)})")
            for k in OFFICIAL_KEYS:
                if k in rec and not _is_number(rec[k]):
                    raise LogFormatError(f"{where}: key {k!r} must be a number, got {rec[k]!r}")
            if not float(rec["epoch"]).is_integer():
                raise LogFormatError(f"{where}: epoch must be an integer, got {rec['epoch']!r}")
            if records and rec["epoch"] <= records[-1]["epoch"]:
                raise LogFormatError(f"{where}: epoch {rec['epoch']} does not follow epoch {records[-1]['epoch']} "
                                     f"(a log of a resumed run restarted? keep one run per file)")
            records.append(rec)
    if not records:
        raise LogFormatError(f"{path}: empty log (no JSON lines)")
    return records


def _series(records: list[dict], key: str, progress: bool = False):
    """(x, y) of one key; x is the epoch, or with ``progress`` the fraction of the run done after that epoch."""
    last = records[-1]["epoch"] + 1
    pts = [((r["epoch"] + 1) / last if progress else r["epoch"], r[key])
           for r in records if key in r and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def draw_logs(paths, labels=None, title=None, x_axis: str = "epoch", styles=None):
    """The four panels for one or more logs as a matplotlib Figure (not saved).

    ``x_axis``: "epoch", or "progress" (fraction of each run, to overlay runs of different lengths, e.g. a
    12-epoch embedded run and a 300-epoch official ImageNet log). ``styles``: one matplotlib line style per
    log (default solid).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x_axis not in ("epoch", "progress"):
        raise ValueError(f"x_axis must be 'epoch' or 'progress', got {x_axis!r}")
    paths = [pathlib.Path(p) for p in paths]
    labels = [p.stem for p in paths] if labels is None else labels
    styles = ["-"] * len(paths) if styles is None else styles
    if len(labels) != len(paths) or len(styles) != len(paths):
        raise ValueError(f"{len(labels)} labels and {len(styles)} styles for {len(paths)} logs")
    logs = [load_log(p) for p in paths]
    progress = x_axis == "progress"
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (ax_tl, ax_vl), (ax_acc, ax_lr) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (records, label, ls) in enumerate(zip(logs, labels, styles)):
        c = colors[i % len(colors)]
        ax_tl.plot(*_series(records, "train_loss", progress), color=c, ls=ls, label=label)
        ax_vl.plot(*_series(records, "test_loss", progress), color=c, ls=ls, label=label)
        acc = _series(records, "test_acc1", progress)
        ax_acc.plot(*acc, color=c, ls=ls, label=f"{label} (max {max(acc[1]):.2f})")
        ema = _series(records, "test_ema_acc1", progress)
        if ema[0]:
            ax_acc.plot(*ema, color=c, ls=":", label=f"{label} EMA (max {max(ema[1]):.2f})")
        ax_lr.plot(*_series(records, "train_lr", progress), color=c, ls=ls, label=label)
    xlabel = "fraction of the run" if progress else "epoch"
    for ax, name in ((ax_tl, "train loss"), (ax_vl, "test loss"), (ax_acc, "test top-1 (%)"), (ax_lr, "learning rate")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_logs(paths, labels=None, out="figures/training_curves.png", title=None) -> pathlib.Path:
    """Draws the four panels for one or more logs into `out` (PNG); returns its path."""
    import matplotlib.pyplot as plt

    fig = draw_logs(paths, labels, title)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Plot per-epoch JSON-lines classification training logs.")
    parser.add_argument("logs", nargs="+", help="log files (one JSON object per epoch)")
    parser.add_argument("--labels", nargs="+", default=None, help="one legend label per log (default: file stems)")
    parser.add_argument("--out", default="figures/training_curves.png", help="output PNG path")
    parser.add_argument("--title", default=None, help="figure title")
    args = parser.parse_args(argv)
    try:
        out = plot_logs(args.logs, args.labels, args.out, args.title)
    except (LogFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, label in zip(args.logs, args.labels or [pathlib.Path(p).stem for p in args.logs]):
        recs = load_log(path)
        best = max(r["test_acc1"] for r in recs)
        ema = [r["test_ema_acc1"] for r in recs if "test_ema_acc1" in r]
        extra = f", max EMA top-1 {max(ema):.3f}" if ema else ""
        print(f"{label}: {len(recs)} epochs, max top-1 {best:.3f}{extra}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
