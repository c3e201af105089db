"""Benchmark: depthwise convolution forward + backward on the CPU, ``torch`` (``F.conv2d``, oneDNN's backward) against
``cpp`` (the same forward and input gradient, the weight and bias gradients of ``kernels/depthwise_conv``).

Shapes: the depthwise convolutions of the models at 224x224 batch 8 (channels-last, bias), kernels 5 x 5 and 7 x 7
(PPMA / RMT's LePE, MPViT's conv relative position encoding, PaCa-ViT's clustering conv), and 3 x 3 ones, for which
``impl="auto"`` keeps oneDNN (the rows show why). Both impls run in this process, alternating, on the same
tensors; time = median of ``--repeats`` fwd+bwd calls; ``alloc`` = the allocator's peak over one more call.

Usage: ``python benchmarks/bench_depthwise_conv.py [--repeats 7] [--threads 2] [--json PATH]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_polyline_attention import write_json  # noqa: E402
from benchmarks.memory import allocator_peak_bytes  # noqa: E402

# (label, batch, channels, grid side, kernel)
SHAPES = [("PPMA/RMT-T LePE s1", 8, 64, 56, 5), ("PPMA/RMT-T LePE s2", 8, 128, 28, 5),
          ("PPMA/RMT-T LePE s3", 8, 256, 14, 5), ("PPMA/RMT-T LePE s4", 8, 512, 7, 5),
          ("MPViT-T CRPE s1 7x7", 8, 24, 56, 7), ("MPViT-T CRPE s2 5x5", 8, 36, 28, 5),
          ("MPViT-T CRPE s3 7x7", 8, 66, 14, 7), ("PaCa-T P2CConv s2", 8, 192, 28, 7),
          ("3x3, PPMA-T FFN s1", 8, 192, 56, 3), ("3x3, PPMA-T pos s1", 8, 64, 56, 3),
          ("3x3, PPMA-T FFN s3", 8, 768, 14, 3)]


def run_shape(shape: tuple, repeats: int) -> dict:
    import torch

    from kernels.depthwise_conv import depthwise_conv2d

    _, b, c, s, k = shape
    torch.manual_seed(0)
    x = torch.randn(b, s, s, c).permute(0, 3, 1, 2).requires_grad_()  # channels-last, as in the models
    w = torch.randn(c, 1, k, k).to(memory_format=torch.channels_last).requires_grad_()
    bias = torch.randn(c, requires_grad=True)
    grad = torch.randn(b, s, s, c).permute(0, 3, 1, 2)

    def step(impl):
        depthwise_conv2d(x, w, bias, (k // 2, k // 2), impl=impl).backward(grad)
        x.grad = w.grad = bias.grad = None

    times = {impl: [] for impl in ("torch", "cpp")}
    for impl in times:
        step(impl)
    for _ in range(repeats):
        for impl, ts in times.items():
            t0 = time.perf_counter()
            step(impl)
            ts.append(time.perf_counter() - t0)
    return {impl: dict(time=sorted(ts)[len(ts) // 2], alloc=allocator_peak_bytes(lambda: step(impl)))
            for impl, ts in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the settings and results to this JSON file")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"depthwise conv fwd+bwd (bias, channels-last), fp32, CPU, threads={args.threads}, median of "
          f"{args.repeats}, alternating in one process; ratio = torch time / cpp time (>1: cpp faster)")
    print(f"{'shape':>22} {'B':>2} {'C':>4} {'grid':>5} {'k':>2} | {'torch ms':>9} {'alloc MiB':>9} | "
          f"{'cpp ms':>8} {'alloc MiB':>9} | {'ratio':>6}")
    results = []
    for shape in SHAPES:
        res = run_shape(shape, args.repeats)
        results.append(dict(shape=shape, cases=res))
        t, c = res["torch"], res["cpp"]
        label, b, ch, s, k = shape
        print(f"{label:>22} {b:>2} {ch:>4} {s:>5} {k:>2} | {t['time'] * 1e3:>9.2f} {t['alloc'] / 2 ** 20:>9.1f} | "
              f"{c['time'] * 1e3:>8.2f} {c['alloc'] / 2 ** 20:>9.1f} | {t['time'] / c['time']:>6.2f}", flush=True)
    if args.json:
        write_json(args.json, dict(benchmark="depthwise conv fwd+bwd, torch vs cpp weight gradient", device="cpu",
                                   threads=args.threads, repeats=args.repeats, time="median seconds",
                                   alloc="bytes", results=results))


if __name__ == "__main__":
    main()
