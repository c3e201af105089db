"""Benchmark: RMT's Manhattan-decay attention, forward + backward, at the shapes of RMT-T's stages.

Cases (same run, same inputs): ``reference`` = the official computation (explicit scores, mask added, softmax,
autograd backward), ``torch`` = the PyTorch path (SDPA's fused CPU kernel in the full mode, the explicit ops in
the axial mode), ``cpp`` = the compiled CPU path (decay computed on the fly). The masks of ``reference`` and
``torch`` are built before the timing (RMT builds them once per stage for all its blocks), so neither their
time nor their memory is counted: the ratios favour the baselines.

Shapes (batch, heads, grid, head dim): RMT-T's four stages at 224x224 batch 8 and at 800x1344 batch 1 (stages
1-2 axial, 3-4 full). Peak memory and times as in ``bench_polyline_attention.py`` (one subprocess per case, peak
RSS growth from before the first call at the shape, and the allocator's peak ``alloc``; median of ``--repeats``).

Usage: ``python benchmarks/bench_manhattan_attention.py [--repeats 3] [--threads 2] [--impls reference,torch,cpp]
[--shapes 224|800x1344|all] [--json PATH]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_polyline_attention import write_json  # noqa: E402
from benchmarks.memory import allocator_peak_bytes, reset_peak_rss, rss_bytes  # noqa: E402

# (label, mode, batch, heads, H, W, head dim): RMT-T stages (dims 64/128/256/512, heads 4/4/8/16)
SHAPES = {
    "224": [("224 s1", "axial", 8, 4, 56, 56, 16), ("224 s2", "axial", 8, 4, 28, 28, 32),
            ("224 s3", "full", 8, 8, 14, 14, 32), ("224 s4", "full", 8, 16, 7, 7, 32)],
    "800x1344": [("800x1344 s1", "axial", 1, 4, 200, 336, 16), ("800x1344 s2", "axial", 1, 4, 100, 168, 32),
                 ("800x1344 s3", "full", 1, 8, 50, 84, 32), ("800x1344 s4", "full", 1, 16, 25, 42, 32)],
}


def run_case(impl: str, shape: tuple, repeats: int, threads: int) -> dict:
    import torch
    from kernels.manhattan_attention import manhattan_attention, manhattan_masks

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, mode, b, n, h, w, d = shape
    decay = torch.log(1 - 2 ** (-2 - 4 * torch.arange(n, dtype=torch.float) / n))

    def make(hh, ww):
        qkv = [torch.randn(b, n, hh, ww, d, requires_grad=True) for _ in range(3)]
        masks = None if impl == "cpp" else manhattan_masks(decay, hh, ww, mode)
        return qkv, masks, torch.randn(b, n, hh, ww, d)

    def step(qkv, masks, grad):
        manhattan_attention(*qkv, decay, mode=mode, scale=1.0, impl=impl, masks=masks).backward(grad)
        for t in qkv:
            t.grad = None

    step(*make(2, 3))  # imports and first-call costs
    case = make(h, w)
    reset_peak_rss()
    base = rss_bytes("VmRSS")
    times = []
    for i in range(repeats + 1):  # the first run (allocator growth) counts for memory, not for time
        t0 = time.perf_counter()
        step(*case)
        if i:
            times.append(time.perf_counter() - t0)
    peak = max(rss_bytes("VmHWM") - base, 0)
    alloc = allocator_peak_bytes(lambda: step(*case))  # one more call, after the resident set was read
    times.sort()
    return dict(impl=impl, time=times[len(times) // 2], peak=peak, alloc=alloc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impls", default="reference,torch,cpp")
    ap.add_argument("--shapes", default="all", choices=["224", "800x1344", "all"])
    ap.add_argument("--json", default=None, help="also write the settings and results to this JSON file")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = [s for key, rows in SHAPES.items() if args.shapes in (key, "all") for s in rows]
    if args.case:  # child process: one case
        impl, index = args.case.split(":")
        print(json.dumps(run_case(impl, shapes[int(index)], args.repeats, args.threads)))
        return
    impls = args.impls.split(",")
    print(f"Manhattan attention fwd+bwd, fp32, CPU, threads={args.threads}, median of {args.repeats}; memory: peak "
          "RSS growth from before the first call, and the allocator's peak (alloc), one subprocess per case; ratios "
          "against the reference (official ops)")
    print(f"{'shape':>12} {'mode':>5} {'B':>2} {'n':>3} {'grid':>8} | "
          + " | ".join(f"{i:>9} s {i:>9} MiB {'alloc':>9}" for i in impls) + " | "
          + " ".join(f"{i + '/ref time':>14} {i + '/ref mem':>13} {i + '/ref alloc':>15}"
                     for i in impls if i != "reference"))
    results = []
    for index, shape in enumerate(shapes):
        res = {}
        for impl in impls:
            cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{impl}:{index}", "--shapes", args.shapes,
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            res[impl] = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
            if p.returncode:
                print(f"  [{impl} {shape[0]} failed: {p.stderr.strip().splitlines()[-1] if p.stderr else p.returncode}]")
        results.append(dict(shape=shape, cases=res))
        label, mode, b, n, h, w, _ = shape
        cells = [f"{r['time']:>11.4f} {r['peak'] / 2 ** 20:>13.1f} {r['alloc'] / 2 ** 20:>9.1f}" if r else
                 f"{'n/a':>11} {'n/a':>13} {'n/a':>9}" for r in (res[i] for i in impls)]
        ref = res.get("reference")
        ratios = [f"{res[i]['time'] / ref['time']:>14.3f} {res[i]['peak'] / max(ref['peak'], 1):>13.3f} "
                  f"{res[i]['alloc'] / max(ref['alloc'], 1):>15.3f}"
                  if res[i] and ref else f"{'n/a':>14} {'n/a':>13} {'n/a':>15}" for i in impls if i != "reference"]
        print(f"{label:>12} {mode:>5} {b:>2} {n:>3} {h:>3}x{w:<4} | " + " | ".join(cells) + " | " + " ".join(ratios),
              flush=True)
    if args.json:
        write_json(args.json, dict(benchmark="Manhattan attention, RMT-T stage shapes, fwd+bwd", device="cpu",
                                   threads=args.threads, repeats=args.repeats, time="median seconds",
                                   peak="bytes", alloc="bytes", results=results))


if __name__ == "__main__":
    main()
