"""Kernel scaling: time and peak memory against the problem size, ours against the baselines.

    python figures/plot_kernel_scaling.py [--polyline benchmarks/cpu_results/bench_polyline_attention.json]
        [--scan benchmarks/cpu_results/bench_selective_scan.json] [--gpu benchmarks/gpu_results/<run>.json]
        [--out figures/kernel_scaling.png]

Top row, CPU (the JSON the benchmark scripts write with ``--json``): polyline attention fwd + bwd (full mode)
time and peak memory against the token count N for ours (``torch``: tiled, exact), the official-style dense
path and unmasked SDPA (no mask, a lower bound); the selective scan fwd + bwd against the sequence length L,
ours (``torch``: chunked) against the sequential reference. Bottom row (with ``--gpu``): the same from a GPU
suite report (``python -m benchmarks.gpu_suite``; bf16 polyline cases, fp32 scan). Its polyline cases use
different batches per N, so time and memory are per image; its scan cases differ in batch and channels, so
they are plotted against the element count b * Di * L.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
CPU_RESULTS = ROOT / "benchmarks" / "cpu_results"
IMPL_STYLE = {  # implementation -> (label, colour, marker)
    "torch": ("ours (torch)", "tab:red", "o"),
    "cpp": ("ours (C++)", "tab:purple", "D"),
    "triton": ("ours (Triton)", "darkred", "*"),
    "triton-rows": ("ours (Triton, row tiles)", "tab:orange", "P"),
    "dense": ("dense (official)", "tab:blue", "s"),
    "reference": ("sequential reference", "tab:blue", "s"),
    "flex": ("FlexAttention + bias", "tab:green", "^"),
    "sdpa": ("SDPA, no mask", "tab:gray", "v"),
}
_GPU_POLY = re.compile(r"^polyline fwd\+bwd N=(\d+) \(\d+x\d+\) B=(\d+) bf16 ([\w-]+)$")
_GPU_SCAN = re.compile(r"^scan fwd\+bwd b=(\d+) Di=(\d+) L=(\d+) (\w+)$")


def _series(points: dict, ax_time, ax_mem):
    """points: impl -> list of (x, seconds, MiB); one line per implementation on both axes."""
    for impl, pts in points.items():
        label, colour, marker = IMPL_STYLE[impl]
        pts = sorted(pts)
        xs = [p[0] for p in pts]
        ax_time.plot(xs, [p[1] * 1e3 for p in pts], color=colour, marker=marker, label=label)
        ax_mem.plot(xs, [max(p[2], 1e-2) for p in pts], color=colour, marker=marker, label=label)


def cpu_polyline_points(data: dict) -> dict:
    points: dict = {}
    for row in data["results"]:
        for impl, r in row["cases"].items():
            if r is not None:
                points.setdefault(impl, []).append((row["n"], r["time"], r["peak"] / 2**20))
    return points


def cpu_scan_points(data: dict) -> dict:
    points: dict = {}
    for row in data["results"]:
        for impl, r in row["cases"].items():
            if impl in IMPL_STYLE:  # the "floor" bound is not an implementation
                points.setdefault(impl, []).append((row["L"], r["best_s"], r["peak_mb"]))
    return points


def gpu_points(report: dict) -> tuple[dict, dict]:
    """(polyline points per image, scan points per element count) from a GPU suite report's kernel section."""
    poly: dict = {}
    scan: dict = {}
    for rec in report["sections"]["kernels"]["records"]:
        if rec.get("status") != "ok" or "ms" not in rec:  # skipped cases and the ratio records
            continue
        if m := _GPU_POLY.match(rec["case"]):
            n, b, impl = int(m[1]), int(m[2]), m[3]
            poly.setdefault(impl, []).append((n, rec["ms"] / 1e3 / b, rec["peak_mib"] / b))
        elif m := _GPU_SCAN.match(rec["case"]):
            b, d, length, impl = int(m[1]), int(m[2]), int(m[3]), m[4]
            scan.setdefault(impl, []).append((b * d * length, rec["ms"] / 1e3, rec["peak_mib"]))
    if not poly or not scan:
        raise ValueError("the GPU report has no polyline / scan kernel cases in the expected format")
    return poly, scan


def _style(axes, titles, xlabels, ylabels):
    from matplotlib.ticker import NullFormatter

    for ax, title, xl, yl in zip(axes, titles, xlabels, ylabels):
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
        ax.set_xticks(xs, [f"{x:,.0f}" if x < 1e5 else f"{x:.1e}" for x in xs], fontsize=7)  # the measured sizes
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel(yl, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)


def draw_kernel_scaling(polyline: dict, scan: dict, gpu: dict | None = None, gpu_name: str = "GPU"):
    """The figure (CPU row, plus a GPU row when ``gpu`` is given) as a matplotlib Figure (not saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if gpu else 1
    fig, axes = plt.subplots(rows, 4, figsize=(17, 4.2 * rows), squeeze=False)
    _series(cpu_polyline_points(polyline), axes[0, 0], axes[0, 1])
    _series(cpu_scan_points(scan), axes[0, 2], axes[0, 3])
    pl = f"CPU, {polyline['threads']} threads, B {polyline['batch']}, {polyline['heads']} heads, d {polyline['head_dim']}"
    sc = f"CPU, {scan['threads']} thread(s), b {scan['results'][0]['b']}, Di {scan['results'][0]['D']}"
    _style(axes[0], [f"polyline attention fwd+bwd: time\n{pl}", f"polyline attention: peak memory\n{pl}",
                     f"selective scan fwd+bwd: time (best of {scan['repeats']})\n{sc}", f"selective scan: peak memory\n{sc}"],
           ["tokens N", "tokens N", "length L", "length L"], ["ms", "MiB (RSS growth)", "ms", "MiB (RSS growth)"])
    if gpu:
        poly_pts, scan_pts = gpu_points(gpu)
        _series(poly_pts, axes[1, 0], axes[1, 1])
        _series(scan_pts, axes[1, 2], axes[1, 3])
        _style(axes[1], [f"polyline fwd+bwd, bf16: time per image\n{gpu_name}", f"polyline: peak memory per image\n{gpu_name}",
                         f"selective scan fwd+bwd, fp32: time\n{gpu_name}", f"selective scan: peak memory\n{gpu_name}"],
               ["tokens N", "tokens N", "elements b x Di x L", "elements b x Di x L"],
               ["ms / image", "MiB / image (peak allocated)", "ms", "MiB (peak allocated)"])
    load = f"CPU load average at the end of the runs: polyline {polyline['loadavg'][0]:g}, scan {scan['loadavg'][0]:g}"
    fig.suptitle(f"Kernel scaling ({polyline['date_utc']}; {load})", fontsize=9)
    fig.tight_layout()
    return fig


def latest_gpu_report() -> pathlib.Path | None:
    """The newest GPU suite report (benchmarks/gpu_results/*.json) that has a kernel section, if any."""
    for path in sorted((ROOT / "benchmarks" / "gpu_results").glob("*.json"), reverse=True):
        if "kernels" in json.loads(path.read_text()).get("sections", {}):
            return path
    return None


def build_figure(polyline_json, scan_json, gpu_json=None):
    polyline, scan = (json.loads(pathlib.Path(p).read_text()) for p in (polyline_json, scan_json))
    gpu = json.loads(pathlib.Path(gpu_json).read_text()) if gpu_json else None
    gpu_name = f"{gpu['meta']['gpu'].split(',')[0]}, {gpu['meta']['date']}" if gpu else ""
    return draw_kernel_scaling(polyline, scan, gpu, gpu_name)


def main(argv=None):
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polyline", default=str(CPU_RESULTS / "bench_polyline_attention.json"))
    ap.add_argument("--scan", default=str(CPU_RESULTS / "bench_selective_scan.json"))
    ap.add_argument("--gpu", default=None, help="a GPU suite report (default: the newest in benchmarks/gpu_results)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_scaling.png"))
    args = ap.parse_args(argv)
    fig = build_figure(args.polyline, args.scan, args.gpu or latest_gpu_report())
    fig.savefig(args.out, dpi=90)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
