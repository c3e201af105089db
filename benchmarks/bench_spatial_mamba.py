"""Benchmark: Spatial-Mamba T / S / B inference throughput (images/s) at 224x224, batch 8, fp32.

    python benchmarks/bench_spatial_mamba.py [--threads 1] [--repeats 2] [--models tiny,small,base] [--device cpu]

Eval mode under ``torch.inference_mode``, one warm-up batch, median of ``--repeats`` timed batches. The state
fusion runs in its eval form (the folded 11x11 kernel, ``fused_eval=True``, official behaviour) and, for
comparison, in the three-branch form (``fused_eval=False``; same outputs, 27 instead of 121 taps).
Besides wall-clock images/s the table gives the process CPU time per batch (``time.process_time``), which is
the more stable number on a shared machine (with one thread, CPU time ~ wall time when the core is not shared).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--models", default="tiny,small,base")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()

    import timm
    import torch

    import models.spatial_mamba  # noqa: F401  (registers the models)

    torch.set_num_threads(a.threads)
    x = torch.randn(a.batch, 3, a.size, a.size, device=a.device)
    print(f"Spatial-Mamba inference, fp32, batch {a.batch}, {a.size}x{a.size}, device {a.device}, "
          f"{a.threads} thread(s), median of {a.repeats}")
    print(f"{'model':>20} {'fusion':>8} {'s/batch':>9} {'images/s':>9} {'cpu s/batch':>12} {'images/cpu-s':>13}")
    for name in a.models.split(","):
        for fused in (True, False):
            model = timm.create_model(f"spatial_mamba_{name}", fused_eval=fused).to(a.device).eval()
            times, cpu = [], []
            with torch.inference_mode():
                for i in range(a.repeats + 1):
                    t0, c0 = time.perf_counter(), time.process_time()
                    model(x)
                    if a.device == "cuda":
                        torch.cuda.synchronize()
                    if i:
                        times.append(time.perf_counter() - t0)
                        cpu.append(time.process_time() - c0)
            t = sorted(times)[len(times) // 2]
            c = sorted(cpu)[len(cpu) // 2]
            print(f"{'spatial_mamba_' + name:>20} {'11x11' if fused else '3x3x3':>8} {t:>9.2f} {a.batch / t:>9.2f} "
                  f"{c:>12.2f} {a.batch / c:>13.2f}", flush=True)
            del model


if __name__ == "__main__":
    main()
