"""Benchmark: whole-model images/s and peak memory, inference and training step, ours and (optionally) the
official code with the same weights.

    python benchmarks/bench_models.py --models ppma_tiny,rmt_tiny [--size 224 | --size 800x1344] [--batch 8]
        [--threads 2] [--modes infer,train] [--pairs 2] [--repeats 3] [--device cpu|cuda] [--amp bf16|fp16]
        [--grad-checkpointing full|selective] [--model-kwargs KEY=VALUE ...] [--keep-freed-memory]
        [--official-root DIR [--pylib DIR]] [--json PATH]

Every measurement runs in a fresh subprocess: build the model, one untimed call, then ``--repeats`` timed calls
(median). ``infer`` = eval mode under ``torch.inference_mode``; ``train`` = train mode, cross-entropy on random
labels, backward (no optimizer step: the optimizer is the same code for both); ``--amp`` runs the forward of both
under ``torch.autocast`` with that dtype (as training on a GPU does), fp32 otherwise. Peak memory: on CPU the growth
of the process's peak resident set (VmHWM) over its resident set before the first call, the model built: what a
step needs, whatever the allocator kept from the step before (measured from after the untimed call, a step that
found its memory still mapped grew by 0 MiB); on CUDA ``max_memory_allocated`` above the memory allocated before
the timed calls. On CPU one more call after those gives the allocator's peak (``alloc``: the most bytes PyTorch's
CPU allocator held at once above what it held before, from the profiler's memory events: what CUDA's
``max_memory_allocated`` counts, without what malloc keeps mapped). A training step also reports the activations
autograd saved for its backward (``saved``: each storage once, parameters and buffers left out), counted in the
untimed call: the same bytes in every process and on every device (not counted with ``--grad-checkpointing``,
whose recomputed blocks save through their own hooks). ``--grad-checkpointing`` applies to ours only
(``set_grad_checkpointing``), and so does ``--model-kwargs`` (arguments of ``timm.create_model``, values read as
Python literals, e.g. ``ffn_recompute=True``); the official models run as they are. ``--keep-freed-memory`` runs
every process, ours and the official one alike, with glibc keeping freed memory (``kernels.cpu_allocator``, what
the training launchers do on a CPU device); without it both run under glibc's defaults.

With ``--official-root`` (a folder with the official checkouts PPMA, P2T, PaCaViT, MPViT, Spatial-Mamba, see
``tools/official_models.py``; never needed by tests or CI) each model is also built from the official code,
seeded, and its weights saved once; ours loads that file through the public API (timm's
``pretrained_cfg_overlay``), so both run the same weights. Official and ours then alternate in fresh processes
(official, ours, official, ours, ...) and the ratio ours / official is printed per pair and as the median over
pairs: this machine's speed drifts by up to 2x over minutes, so only ratios of neighbouring runs compare.
Spatial-Mamba's official scan is CUDA-only; on CPU a sequential PyTorch loop (fp32) stands in for it.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from a checkout that is not installed (a lent GPU machine)
    sys.path.insert(0, ROOT)

from benchmarks.memory import allocator_peak_bytes, reset_peak_rss, rss_bytes  # noqa: E402

MODES = ("infer", "train")
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # --amp: autocast dtype of the forward


def _official_model(name: str, official_root: str, pylib: str | None):
    # run as a script, its folder is on the path but not the repository root (benchmarks.* is no installed package)
    sys.path[:0] = [os.path.join(ROOT, "tools"), ROOT]
    from official_models import Official, variant_builders

    off = Official(pathlib.Path(official_root), pathlib.Path(pylib) if pylib else None, exact_scan=False)
    builders = variant_builders(off)
    from benchmarks.paper_numbers import canonical_name

    name = canonical_name(name)  # pacavit_tiny -> pacavit_tiny_p2cconv_100_0 (the official code knows no aliases)
    if name not in builders:
        raise SystemExit(f"no official builder for {name!r}; known: {sorted(builders)}")
    return builders[name]()[0]


def build(impl: str, name: str, weights: str | None, official_root: str | None, pylib: str | None,
          model_kwargs: dict | None = None):
    import timm
    import torch

    import models  # noqa: F401  (registers ours)

    torch.manual_seed(0)
    if impl == "official":
        return _official_model(name, official_root, pylib)
    model_kwargs = model_kwargs or {}
    if weights:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=weights), **model_kwargs)
    return timm.create_model(name, **model_kwargs)


def _step_fn(model, mode: str, batch: int, hw: tuple[int, int], device, amp: str | None = None):
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(0)).to(device)
    dtype = getattr(torch, AMP_DTYPES[amp]) if amp else None

    def forward():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(x)
    if mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode():
                forward()
        return step
    model.train()
    y = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(1)).to(device)

    def step():
        F.cross_entropy(forward().float(), y).backward()
        model.zero_grad(set_to_none=True)
    return step


def run_case(args, impl: str, name: str, mode: str) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        from kernels.cpu_allocator import keep_freed_memory
        keep_freed_memory()
    device = torch.device(args.device)
    model = build(impl, name, args.weights, args.official_root, args.pylib, args.model_kwargs).to(device)
    step = _step_fn(model, mode, args.batch, args.hw, device, args.amp)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type != "cuda":  # the resident set, as the peak below reads it
        reset_peak_rss()
        base = rss_bytes("VmRSS")
    if impl == "ours" and args.grad_checkpointing:
        model.set_grad_checkpointing(True if args.grad_checkpointing == "full" else args.grad_checkpointing)
    saved = alloc = None
    if mode == "train" and not args.grad_checkpointing:
        saved = saved_activation_bytes(model, step)  # the untimed call
    else:
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else rss_bytes("VmHWM")) - base
    if device.type == "cpu":  # one more call, after the resident set was read: the profiler's records add to it
        alloc = allocator_peak_bytes(step)
    sec = statistics.median(times)
    out = {"impl": impl, "model": name, "mode": mode, "img_s": args.batch / sec, "peak_mib": max(peak, 0) / 2**20}
    if saved is not None:
        out["saved_mib"] = saved / 2**20
    if alloc is not None:
        out["alloc_mib"] = alloc / 2**20
    return out


def saved_activation_bytes(model, step) -> int:
    """Runs ``step`` (a training step of ``model``) and returns the bytes of the tensors autograd saved for its
    backward, each storage once, the model's parameters and buffers left out."""
    import torch

    held = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in held:  # a saved tensor is alive until the backward: its address is its own
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(saved.values())


def _child(args, impl: str, name: str, mode: str, weights: str | None) -> dict | str:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{impl}:{name}:{mode}", "--size", args.size,
           "--batch", str(args.batch), "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--device", args.device]
    if args.grad_checkpointing:
        cmd += ["--grad-checkpointing", args.grad_checkpointing]
    if args.amp:
        cmd += ["--amp", args.amp]
    if args.keep_freed_memory:
        cmd += ["--keep-freed-memory"]
    if args.model_kwargs:
        cmd += ["--model-kwargs", *(f"{k}={v!r}" for k, v in args.model_kwargs.items())]
    if weights:
        cmd += ["--weights", weights]
    if args.official_root:
        cmd += ["--official-root", args.official_root] + (["--pylib", args.pylib] if args.pylib else [])
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _save_official_weights(args, name: str, folder: str) -> str:
    """The official model's seeded weights, once per model, as the file both sides run."""
    path = os.path.join(folder, f"{name}.pth")
    code = ("import sys, torch; sys.argv = sys.argv[:1]; import benchmarks.bench_models as b; "
            f"m = b.build('official', {name!r}, None, {args.official_root!r}, {args.pylib!r}); "
            f"torch.save({{'model': m.state_dict()}}, {path!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return path


def compare(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        for name in args.models:
            weights = _save_official_weights(args, name, tmp) if args.official_root else None
            impls = ("official", "ours") if args.official_root else ("ours",)
            for mode in args.modes:
                pairs = []
                for i in range(args.pairs):
                    res = {impl: _child(args, impl, name, mode, weights) for impl in impls}
                    pairs.append(res)
                    _print_pair(name, mode, i, res)
                rows.append(_summary(name, mode, pairs))
    return rows


def _print_pair(name, mode, i, res):
    cells = []
    for impl, r in res.items():
        if not isinstance(r, dict):
            cells.append(f"{impl} FAILED: {r}")
            continue
        alloc = f" alloc {r['alloc_mib']:6.0f} MiB" if "alloc_mib" in r else ""
        saved = f" saved {r['saved_mib']:6.0f} MiB" if "saved_mib" in r else ""
        cells.append(f"{impl} {r['img_s']:8.2f} img/s {r['peak_mib']:8.0f} MiB{alloc}{saved}")
    ratio = ""
    if all(isinstance(r, dict) for r in res.values()) and "official" in res:
        ratio = f"  ratio {res['ours']['img_s'] / res['official']['img_s']:.2f}"
    print(f"{name:<28} {mode:<5} pair {i + 1}: " + "  |  ".join(cells) + ratio, flush=True)


def _summary(name, mode, pairs) -> dict:
    ok = [p for p in pairs if all(isinstance(r, dict) for r in p.values())]
    out = {"model": name, "mode": mode, "pairs": len(ok)}
    for impl in ("ours", "official"):
        vals = [p[impl] for p in ok if impl in p]
        if vals:
            out[f"{impl}_img_s"] = statistics.median(v["img_s"] for v in vals)
            out[f"{impl}_peak_mib"] = statistics.median(v["peak_mib"] for v in vals)
            for key in ("saved_mib", "alloc_mib"):
                if key in vals[0]:
                    out[f"{impl}_{key}"] = vals[0][key]  # the same in every run
    if ok and "official" in ok[0]:
        out["ratio_median"] = statistics.median(p["ours"]["img_s"] / p["official"]["img_s"] for p in ok)
        mem = [p["ours"]["peak_mib"] / p["official"]["peak_mib"] for p in ok if p["official"]["peak_mib"] >= 1]
        out["mem_ratio_median"] = statistics.median(mem) if mem else float("nan")  # (< 1 MiB: not measurable)
        for key in ("saved", "alloc"):
            if out.get(f"official_{key}_mib") and f"ours_{key}_mib" in out:
                out[f"{key}_ratio"] = out[f"ours_{key}_mib"] / out[f"official_{key}_mib"]
    return out


def _parse_kwargs(ap, items: list[str]) -> dict:
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--model-kwargs: expected KEY=VALUE, got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a bare word is a string: attn_impl=cpp
    return kwargs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ppma_tiny", type=lambda s: s.split(","))
    ap.add_argument("--modes", default="infer,train", type=lambda s: s.split(","))
    ap.add_argument("--size", default="224", help="224 or HxW (e.g. 800x1344)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default=None, choices=sorted(AMP_DTYPES), help="autocast dtype of the forward")
    ap.add_argument("--grad-checkpointing", default=None, choices=("full", "selective"),
                    help="ours with set_grad_checkpointing(True | 'selective')")
    ap.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                    help="keyword arguments of ours' timm.create_model, values as Python literals "
                         "(e.g. ffn_recompute=True)")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="both codes' processes keep freed memory (kernels.cpu_allocator), as the trainers do on CPU")
    ap.add_argument("--official-root", default=None)
    ap.add_argument("--pylib", default=None, help="extra import path for the official code's dependencies")
    ap.add_argument("--json", default=None, help="also write the summary rows here")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    hw = args.size.split("x")
    args.hw = (int(hw[0]), int(hw[-1]))
    if any(m not in MODES for m in args.modes):
        ap.error(f"--modes: choose from {MODES}")
    args.model_kwargs = _parse_kwargs(ap, args.model_kwargs)
    if args.case:
        impl, name, mode = args.case.split(":")
        print(json.dumps(run_case(args, impl, name, mode)))
        return
    print(f"batch {args.batch}, {args.hw[0]}x{args.hw[1]}, {args.threads} thread(s), device {args.device}, "
          f"{args.amp or 'fp32'}, ours with grad checkpointing {args.grad_checkpointing or 'off'}"
          f"{''.join(f', {k}={v!r}' for k, v in args.model_kwargs.items())}"
          f"{', freed memory kept (both)' if args.keep_freed_memory else ''}, median of "
          f"{args.repeats}, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = compare(args)
    print("\nmodel                        mode   ours img/s  official img/s  ours/official (median)  mem ratio"
          "  alloc ratio  saved ratio")
    for r in rows:
        print(f"{r['model']:<28} {r['mode']:<5} {r.get('ours_img_s', float('nan')):11.2f} "
              f"{r.get('official_img_s', float('nan')):15.2f} {r.get('ratio_median', float('nan')):23.2f} "
              f"{r.get('mem_ratio_median', float('nan')):10.2f} {r.get('alloc_ratio', float('nan')):12.2f} "
              f"{r.get('saved_ratio', float('nan')):12.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
