"""Benchmark: polyline-path masked attention, forward + backward, full mode (default) or ``--mode criss_cross``.

Cases (same run, same inputs): ``dense`` = the official-style path (full mode: materialise the (B, n, N, N)
log-mask with the official repeat/permute construction, two softmaxes, autograd backward; criss-cross mode: the
reference, which builds the official 1-D masks and axial softmaxes, autograd backward), ``torch`` / ``cpp`` /
``triton`` = this package's exact paths (``kernels.polyline_attention`` with that impl; ``cpp`` exists for the
criss-cross mode), ``sdpa`` = plain unmasked ``F.scaled_dot_product_attention`` over all N tokens (no mask at
all; a lower bound for the full mode).

Shapes: batch 2, 8 heads, head dim 32, grids 14x14, 28x28, 56x56, 60x70 (N = 196, 784, 3136, 4200).

Peak memory: on CPU every case runs in its own subprocess and reports the growth of the process's peak
resident set size (``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs`` after a
warm-up call on a tiny grid) over its RSS just before the first call at the real shape, i.e. the extra memory
the forward + backward needed (inputs and one-time import costs excluded), and, from one more call, the
allocator's peak (``alloc``, ``benchmarks/memory.py``: exact, without the freed memory malloc keeps mapped
and reuses, which the resident set cannot see). Times: median of ``--repeats`` runs after one untimed run at
the real shape. On CUDA it is ``torch.cuda.max_memory_allocated`` minus the memory allocated before the runs.

Usage: ``python benchmarks/bench_polyline_attention.py [--device cpu|cuda] [--repeats 3] [--threads 2]
[--sizes 14x14,28x28,56x56,60x70] [--impls dense,torch,sdpa] [--mode full|criss_cross] [--json PATH]``

``--json PATH`` also writes the settings and every case's result (``null`` for a failed case) as JSON; the
kernel-scaling figure (``figures/plot_kernel_scaling.py``) is drawn from such a file.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.memory import allocator_peak_bytes, reset_peak_rss, rss_bytes  # noqa: E402


def dense_official(q, k, v, log_a, log_b):
    """The official ``MambaAttentionAllDouble`` computation (mask built as ``PathEmbeding2D`` does)."""
    import torch

    b, n, h, w, d = q.shape

    def mask_1d(x):
        size = x.size(-1)
        c = torch.cumsum(x, dim=-1)
        tril = torch.tril(torch.ones(size, size, device=x.device, dtype=torch.bool))
        triu = torch.triu(torch.ones(size, size, device=x.device, dtype=torch.bool), diagonal=1)
        return (c[..., :, None] - c[..., None, :]).masked_fill(~tril, 0.0) + \
            (c[..., None, :] - c[..., :, None]).masked_fill(~triu, 0.0)

    mw = mask_1d(log_a)  # (B, n, H, W, W)
    mh = mask_1d(log_b.transpose(-1, -2))  # (B, n, W, H, H)
    mh = mh.permute(0, 1, 3, 4, 2).contiguous()  # (B, n, H, H, W)
    mw = mw.unsqueeze(3).repeat(1, 1, 1, h, 1, 1)  # (B, n, H, H, W, W)
    mh = mh.unsqueeze(-2).repeat(1, 1, 1, 1, w, 1)  # (B, n, H, H, W, W)
    m = (mw + mh).permute(0, 1, 2, 4, 3, 5).contiguous().view(b, n, h * w, h * w)
    qf, kf, vf = q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)
    s = qf @ kf.transpose(-1, -2)
    p = 0.5 * torch.softmax(s + m, -1) + 0.5 * torch.softmax(s + m.transpose(-1, -2), -1)
    return (p @ vf).view(b, n, h, w, -1)


def run_case(impl: str, h: int, w: int, device: str, repeats: int, threads: int, mode: str = "full") -> dict:
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, ROOT)
    from kernels.polyline_attention import polyline_attention, polyline_attention_reference

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    b, n, d = 2, 8, 32
    q, k, v = (torch.randn(b, n, h, w, d, device=device, requires_grad=True) for _ in range(3))
    log_a = (-0.3 * torch.rand(b, n, h, w, device=device)).requires_grad_()
    log_b = (-0.3 * torch.rand(b, n, h, w, device=device)).requires_grad_()
    grad = torch.randn(b, n, h, w, d, device=device)

    def step():
        if impl == "dense":
            if mode == "full":
                out = dense_official(q, k, v, log_a, log_b)
            else:
                out = polyline_attention_reference(q, k, v, log_a, log_b, mode, 1.0)
            out.backward(grad)
        elif impl == "sdpa":
            out = F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3), scale=1.0)
            out.backward(grad.flatten(2, 3))
        else:
            out = polyline_attention(q, k, v, log_a, log_b, mode=mode, scale=1.0, impl=impl)
            out.backward(grad)
        for t in (q, k, v, log_a, log_b):
            t.grad = None

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    # warm-up on a tiny grid: imports and first-call costs (e.g. torch._dynamo, pulled in by custom ops) are
    # not counted; the memory of the real shape is (the peak mark is reset after this call)
    small = [t.detach()[:, :, :2, :3].clone().requires_grad_() for t in (q, k, v, log_a, log_b)]
    big = (q, k, v, log_a, log_b, grad)
    q, k, v, log_a, log_b = small
    grad = grad[:, :, :2, :3].clone()
    step()
    q, k, v, log_a, log_b, grad = big
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = rss_bytes("VmRSS")
    times = []
    for i in range(repeats + 1):  # the first run (allocator growth) counts for memory, not for time
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    alloc = None
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = rss_bytes("VmHWM") - base
        alloc = allocator_peak_bytes(step)  # one more call, after the resident set was read
    times.sort()
    return dict(impl=impl, h=h, w=w, time=times[len(times) // 2], peak=max(peak, 0), alloc=alloc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="14x14,28x28,56x56,60x70")
    ap.add_argument("--impls", default=None,
                    help="default: dense,torch,sdpa (+triton on cuda in full mode, +cpp on cpu in criss-cross mode)")
    ap.add_argument("--mode", default="full", choices=["full", "criss_cross"])
    ap.add_argument("--json", default=None, help="also write the settings and results to this JSON file")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:  # child process: one case
        impl, h, w = args.case.split(":")
        print(json.dumps(run_case(impl, int(h), int(w), args.device, args.repeats, args.threads, args.mode)))
        return
    fast = ("triton" if args.device == "cuda" else None) if args.mode == "full" else (
        "cpp" if args.device == "cpu" else None)
    impls = args.impls.split(",") if args.impls else ["dense", "torch"] + ([fast] if fast else []) + ["sdpa"]
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    mem = "torch.cuda.max_memory_allocated" if args.device == "cuda" else (
        "peak RSS growth (VmHWM) from before the first call at the shape, and the allocator's peak (alloc), one "
        "subprocess per case")
    print(f"{args.mode} polyline attention fwd+bwd, B=2, heads=8, d=32, device={args.device}, "
          f"threads={args.threads}, median of {args.repeats}; memory: {mem}")
    ours = [i for i in impls if i not in ("dense", "sdpa")]
    header = f"{'grid':>7} {'N':>5} | " + " | ".join(f"{i:>8} s  {i:>6} MiB  {'alloc':>8}" for i in impls) + " |" \
        + "".join(f" {i + '/dense time':>16} {i + '/dense mem':>16} {i + '/dense alloc':>16} {i + '/sdpa time':>16}"
                  for i in ours)
    print(header)
    results = []
    for h, w in sizes:
        res = {}
        for impl in impls:
            cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{impl}:{h}:{w}", "--device", args.device,
                   "--repeats", str(args.repeats), "--threads", str(args.threads), "--mode", args.mode]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                res[impl] = None
                print(f"  [{impl} {h}x{w} failed: {p.stderr.strip().splitlines()[-1] if p.stderr else p.returncode}]")
                continue
            res[impl] = json.loads(p.stdout.strip().splitlines()[-1])
        results.append(dict(h=h, w=w, n=h * w, cases=res))
        cells = []
        for impl in impls:
            r = res.get(impl)
            alloc = f"{r['alloc'] / 2 ** 20:>8.1f}" if r and r.get("alloc") is not None else f"{'n/a':>8}"
            cells.append(f"{r['time']:>10.4f}  {r['peak'] / 2 ** 20:>10.1f}  {alloc}" if r else
                         f"{'n/a':>10}  {'n/a':>10}  {alloc}")
        ratio = ""
        dn, sd = res.get("dense"), res.get("sdpa")
        for impl in ours:
            t = res.get(impl)
            ratio += f" {t['time'] / dn['time']:>16.3f} {t['peak'] / max(dn['peak'], 1):>16.3f}" if t and dn else \
                f" {'n/a':>16} {'n/a':>16}"
            ratio += f" {t['alloc'] / max(dn['alloc'], 1):>16.3f}" if t and dn and t.get("alloc") is not None \
                and dn.get("alloc") is not None else f" {'n/a':>16}"
            ratio += f" {t['time'] / sd['time']:>16.3f}" if t and sd else f" {'n/a':>16}"
        print(f"{h:>3}x{w:<3} {h * w:>5} | " + " | ".join(cells) + " |" + ratio, flush=True)
    if args.json:
        write_json(args.json, dict(benchmark=f"polyline attention, {args.mode} mode, fwd+bwd", mode=args.mode,
                                   batch=2, heads=8, head_dim=32,
                                   device=args.device, threads=args.threads, repeats=args.repeats, memory=mem,
                                   time="median seconds", peak="bytes", alloc="bytes (CPU)", results=results))


def write_json(path: str, payload: dict):
    """Writes ``payload`` with the date and the load average (the timings depend on both)."""
    payload = dict(payload, command="python " + " ".join(sys.argv),
                   date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   loadavg=[round(v, 2) for v in os.getloadavg()])
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
