"""Benchmark: selective scan forward + backward, the fast paths (chunked PyTorch ``torch``, compiled C++ ``cpp``,
``triton`` on a GPU) vs the sequential reference (a Python loop over time with autograd: a floor reference, not a
competitor).

    python benchmarks/bench_selective_scan.py [--threads 2] [--repeats 3] [--impls reference,torch,cpp,floor,triton]
        [--cases 2x128x3136,2x512x196] [--json PATH]

Shapes from the issue (batch 2, d_state 1): Di=128, L=3136 (Spatial-Mamba-T stage 1) and Di=512, L=196 (stage
3); ``--cases`` takes other batch x Di x L shapes (e.g. a range of L for the kernel-scaling figure) and
``--json PATH`` also writes the settings and every result as JSON. For each case and implementation one
subprocess runs a warm-up and ``--repeats`` timed fwd+bwd passes (fp32, all inputs require grad) and reports
the median and the best time (the best is the steadier number on a shared machine) and the peak memory: the
process's resident-set peak (``ru_maxrss``) during the timed passes minus the resident set before the first
pass (on CUDA: ``torch.cuda.max_memory_allocated``). The speed-up columns are reference time / implementation
time (medians, bests), measured in the same run.

``floor`` is not an implementation but a bound for any eager pure-PyTorch one: the elementwise passes, prefix
sums and reductions that a chunked fwd + bwd needs at the least (d_state 1, the torch path's chunks, no
safety checks, no carry between chunks, every output and temporary preallocated), run back to back without
autograd; it times the passes only (its results are not used). A speed-up goal above the floor's cannot be met by
sequencing PyTorch ops on that machine, whatever their order; ``cpp`` (``python -m kernels.build_cpu``) is
the compiled path that goes below it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = [(2, 128, 3136), (2, 512, 196)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _floor_step(u, delta, A, B, bias, device):
    """The ``floor`` case (see the module docstring): the fixed sequence of passes, all outputs preallocated."""
    import torch

    from kernels.selective_scan.chunked import DEFAULT_CHUNK, _plan

    b, D, L = u.shape
    T, nc, pad = _plan(L, DEFAULT_CHUNK)  # the torch path's chunks
    if pad:
        raise ValueError(f"the floor case needs a length that splits into equal chunks, got L={L}")
    u, delta, B = (t.view(*t.shape[:-1], nc, T) for t in (u, delta, B))
    A, bias = A.view(D, 1, 1), bias.view(D, 1, 1)
    g = torch.ones_like(u)  # the upstream gradient of h.sum()
    dt, E, h, y, lamB, du, dla, tmp = (torch.empty_like(u) for _ in range(8))

    def step():
        # forward, per chunk: delta' = softplus(delta + bias), S = cumsum(delta' A), E = exp(S - S_first),
        # h = E cumsum(delta' B u / E)
        torch.ops.aten.softplus.out(torch.add(delta, bias, out=dt), 1, 20, out=dt)
        torch.mul(dt, A, out=E).cumsum_(-1)
        E.sub_(E[..., :1].clone()).exp_()
        torch.mul(dt, u, out=h).mul_(B).div_(E).cumsum_(-1).mul_(E)
        # backward: E again, lam = revcumsum(E g) / E, then du, ddelta, dA, dB, dbias
        torch.mul(dt, A, out=E).cumsum_(-1)
        E.sub_(E[..., :1].clone()).exp_()
        lam = torch.mul(E, g, out=y).flip(-1).cumsum_(-1).flip(-1).div_(E)
        torch.mul(torch.mul(lam, B, out=lamB), dt, out=du)
        torch.mul(lam, h, out=dla).addcmul_(du, u, value=-1)
        lamB.mul_(u).addcmul_(dla, A)
        dla.mul_(dt).sum((0, 2, 3))
        lam.mul_(dt).mul_(u).sum(1)
        lamB.addcmul_(lamB, torch.neg(dt, out=tmp).exp_(), value=-1).sum((0, 2, 3))
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def run_case(impl: str, b: int, D: int, L: int, repeats: int, threads: int, device: str) -> dict:
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from kernels.selective_scan import selective_scan, selective_scan_ref

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    N = 1
    tensors = [torch.randn(b, D, L, generator=g), torch.randn(b, D, L, generator=g) - 1,
               -torch.rand(D, N, generator=g) - 0.1, torch.randn(b, N, L, generator=g), torch.randn(D, generator=g)]
    tensors = [t.to(device).requires_grad_() for t in tensors]
    fn = (lambda *x: selective_scan_ref(*x)) if impl == "reference" else (lambda *x: selective_scan(*x, impl=impl))
    if impl == "floor":
        step = _floor_step(*(t.detach() for t in tensors), device)
    else:
        def step():
            for t in tensors:
                t.grad = None
            h = fn(*tensors)
            h.sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()

    step()  # warm-up
    base = _rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    times.sort()
    return dict(impl=impl, b=b, D=D, L=L, time_s=times[len(times) // 2], best_s=times[0], peak_mb=peak)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--impls", default="reference,torch,cpp,floor")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", default=None, help="batch x Di x L shapes, comma-separated (default: the two above)")
    p.add_argument("--json", default=None, help="also write the settings and results to this JSON file")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.case:  # child process
        impl, b, D, L = a.case.split(",")
        print(json.dumps(run_case(impl, int(b), int(D), int(L), a.repeats, a.threads, a.device)))
        return
    impls = a.impls.split(",")
    cases = [tuple(int(x) for x in c.split("x")) for c in a.cases.split(",")] if a.cases else CASES
    peak_kind = 'cuda max_memory_allocated' if a.device == 'cuda' else 'RSS peak above the pre-run RSS, per subprocess'
    print(f"selective scan fwd+bwd, fp32, d_state 1, device {a.device}, {a.threads} thread(s), median of {a.repeats}; "
          f"peak = {peak_kind}")
    print(f"{'batch':>5} {'Di':>5} {'L':>5} {'impl':>10} {'median ms':>10} {'best ms':>9} {'peak (MiB)':>11} "
          f"{'speed-up (median / best)':>25}")
    results = []
    for b, D, L in cases:
        res = {}
        for impl in impls:
            out = subprocess.run([sys.executable, __file__, "--case", f"{impl},{b},{D},{L}", "--repeats",
                                  str(a.repeats), "--threads", str(a.threads), "--device", a.device],
                                 capture_output=True, text=True, check=True)
            res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(dict(b=b, D=D, L=L, cases=res))
        ref = res.get("reference")
        for impl, r in res.items():
            ratio = (f"{ref['time_s'] / r['time_s']:.1f}x / {ref['best_s'] / r['best_s']:.1f}x" if ref else "-")
            print(f"{b:>5} {D:>5} {L:>5} {impl:>10} {r['time_s'] * 1e3:>10.1f} {r['best_s'] * 1e3:>9.1f} "
                  f"{r['peak_mb']:>11.1f} {ratio:>25}", flush=True)
    if a.json:
        write_json(a.json, dict(benchmark="selective scan fwd+bwd, fp32, d_state 1", device=a.device,
                                threads=a.threads, repeats=a.repeats, memory=peak_kind, results=results))


def write_json(path: str, payload: dict):
    """Writes ``payload`` with the command, the date and the load average (the timings depend on them)."""
    payload = dict(payload, command="python " + " ".join(sys.argv),
                   date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   loadavg=[round(v, 2) for v in os.getloadavg()])
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
