"""Section 2, kernel speed and memory, every ratio against baselines timed in the same run.

Polyline attention fwd + bwd (full mode, 8 heads, head dim 32): ``dense`` (the official construction:
N x N mask through repeat / permute, two softmaxes, autograd; under autocast for half inputs, as the official
AMP training ran it), ``flex`` (FlexAttention with that mask as a precomputed bias, once per softmax: what a
user would try instead), ``sdpa`` (unmasked ``scaled_dot_product_attention``: FlashAttention for half inputs;
a floor, it computes less), and this package's ``triton`` (flat tiles, the default), ``triton-rows`` (tiles
aligned to image rows) and ``torch`` paths.
Selective scan fwd + bwd (fp32, d_state 1): ``triton`` vs the chunked ``torch`` path vs the sequential
``reference`` loop (a floor reference, timed once).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from benchmarks.bench_polyline_attention import dense_official

from .common import Section, Skip, peak_mib, time_ms, time_once_ms

POLY_IMPLS = ("triton", "triton-rows", "torch", "dense", "flex", "sdpa")


def _polyline_fn(impl: str, half: bool, device):
    from kernels.polyline_attention import polyline_attention, polyline_mask

    def flat(t):
        return t.flatten(2, 3)

    if impl in ("triton", "torch", "triton-rows"):  # (the row layout is switched on around the whole step)
        op_impl = "triton" if impl == "triton-rows" else impl
        return lambda q, k, v, la, lb: polyline_attention(q, k, v, la, lb, scale=1.0, impl=op_impl)
    if impl == "dense":
        def dense(q, k, v, la, lb):
            with torch.autocast(device.type, dtype=q.dtype, enabled=half):
                return dense_official(q, k, v, la, lb)
        return dense
    if impl == "sdpa":
        return lambda q, k, v, la, lb: F.scaled_dot_product_attention(flat(q), flat(k), flat(v), scale=1.0)
    if device.type != "cuda":
        raise Skip("FlexAttention is timed on CUDA only")
    from torch.nn.attention.flex_attention import flex_attention

    def flex(q, k, v, la, lb):
        m = polyline_mask(la, lb)  # (B, n, N, N) fp32, the precomputed bias

        def mask_rows(score, b, h, qi, ki):
            return score + m[b, h, qi, ki]

        def mask_cols(score, b, h, qi, ki):
            return score + m[b, h, ki, qi]

        o1 = flex_attention(flat(q), flat(k), flat(v), score_mod=mask_rows, scale=1.0)
        o2 = flex_attention(flat(q), flat(k), flat(v), score_mod=mask_cols, scale=1.0)
        return 0.5 * o1 + 0.5 * o2
    # compiled as a whole, as FlexAttention must be (eager flex materialises the scores); one trace per case
    return torch.compile(flex, dynamic=False)


class _Reusable:
    """A context manager made afresh on every ``with`` (a generator-based one can be entered only once)."""

    def __init__(self, factory):
        self.factory, self.active = factory, []

    def __enter__(self):
        cm = self.factory()
        self.active.append(cm)
        return cm.__enter__()

    def __exit__(self, *exc):
        return self.active.pop().__exit__(*exc)


def polyline_speed(h: int, w: int, batch: int, heads: int, d: int, dtype, impl: str, device,
                   profile: bool = False) -> dict:
    fn = _polyline_fn(impl, dtype != torch.float32, device)
    layout = contextlib.nullcontext()
    if impl == "triton-rows":
        from kernels.polyline_attention.triton_impl import use_layout

        layout = _Reusable(lambda: use_layout("rows"))
    gen = torch.Generator(device=device).manual_seed(0)
    qkv = [torch.randn(batch, heads, h, w, d, device=device, generator=gen).to(dtype).requires_grad_()
           for _ in range(3)]
    decays = [(-0.3 * torch.rand(batch, heads, h, w, device=device, generator=gen)).requires_grad_()
              for _ in range(2)]
    leaves = qkv + decays
    g = torch.randn(batch, heads, h * w, d, device=device, generator=gen).to(dtype)

    def step():
        with layout:  # forward and backward
            out = fn(*leaves)
            out.backward(g.view_as(out))
        for t in leaves:
            t.grad = None

    if profile:
        return profile_step(step, device)
    mem = peak_mib(step, device)
    ms = time_ms(step, device)
    return {"ms": round(ms, 3), "peak_mib": None if mem is None else round(mem, 1)}


def _ratios(res: dict) -> dict:
    """The goals of the issue: triton vs dense (time, memory), vs FlashAttention and vs FlexAttention."""
    t = res.get("triton")
    out = {}
    for other in ("dense", "flex", "sdpa", "torch", "triton-rows"):
        o = res.get(other)
        if t and o:
            out[f"{other}/triton time"] = round(o["ms"] / t["ms"], 2)
            if t["peak_mib"] and o["peak_mib"]:
                out[f"triton/{other} mem"] = round(t["peak_mib"] / o["peak_mib"], 3)
    return out


def scan_speed(b: int, D: int, L: int, impl: str, device, profile: bool = False) -> dict:
    from kernels.selective_scan import selective_scan, selective_scan_ref

    gen = torch.Generator(device=device).manual_seed(0)
    kw = dict(device=device, generator=gen)
    leaves = [torch.randn(b, D, L, **kw), torch.randn(b, D, L, **kw) - 1, -torch.rand(D, 1, **kw) - 0.1,
              torch.randn(b, 1, L, **kw), torch.randn(D, **kw)]
    leaves = [t.requires_grad_() for t in leaves]
    fn = selective_scan_ref if impl == "reference" else (lambda *x: selective_scan(*x, impl=impl))

    def step():
        fn(*leaves).sum().backward()
        for t in leaves:
            t.grad = None

    if profile:
        return profile_step(step, device)
    mem = peak_mib(step, device)
    ms = time_once_ms(step, device) if impl == "reference" else time_ms(step, device)
    return {"ms": round(ms, 3), "peak_mib": None if mem is None else round(mem, 1)}


def profile_step(step, device, steps: int = 5, top: int = 8) -> dict:
    """Where a step's time goes (torch.profiler): total CPU and device time per step and the ops with the most
    self time on each side, so launch-bound cases show their Python / dispatch overhead."""
    from torch.profiler import ProfilerActivity, profile

    step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize() if device.type == "cuda" else None
    events = prof.key_averages()
    dev_attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"

    def top_by(attr):
        rows = sorted(events, key=lambda e: getattr(e, attr, 0), reverse=True)[:top]
        return "; ".join(f"{e.key[:60]} {getattr(e, attr, 0) / steps / 1e3:.3f} ms x{e.count // steps}" for e in rows)

    return {"cpu_ms_per_step": round(sum(e.self_cpu_time_total for e in events) / steps / 1e3, 3),
            "device_ms_per_step": round(sum(getattr(e, dev_attr, 0) for e in events) / steps / 1e3, 3),
            "top_cpu": top_by("self_cpu_time_total"), "top_device": top_by(dev_attr)}


def _run_group(sec: Section, label: str, impls, case_fn) -> dict:
    res = {}
    for impl in impls:
        rec = sec.run(f"{label} {impl}", lambda: case_fn(impl))
        if rec and rec["status"] == "ok":
            res[impl] = rec
    return res


def run(sec: Section) -> None:
    dev, smoke = sec.device, sec.smoke
    heads, d = (2, 8) if smoke else (8, 32)
    cases = [(6, 7, 1, "bf16"), (6, 7, 1, "fp32")] if smoke else \
        [(60, 70, 8, "bf16"), (56, 56, 16, "bf16"), (112, 112, 2, "bf16"), (60, 70, 8, "fp32")]
    for h, w, batch, dname in cases:
        dtype = torch.bfloat16 if dname == "bf16" else torch.float32
        label = f"polyline fwd+bwd N={h * w} ({h}x{w}) B={batch} {dname}"
        impls = [i for i in POLY_IMPLS if not (i == "flex" and (dname == "fp32" or h * w > 5000))]
        res = _run_group(sec, label, impls,
                         lambda impl: polyline_speed(h, w, batch, heads, d, dtype, impl, dev))
        sec.run(f"{label} ratios", lambda: {**_ratios(res), "status": "ok" if "triton" in res else "error"})
        if (h, w, dname) == cases[0][:2] + ("bf16",):  # where the time goes, once
            sec.run(f"{label} triton profile", lambda: polyline_speed(h, w, batch, heads, d, dtype, "triton", dev,
                                                                      profile=True))
    scan_cases = [(1, 4, 64)] if smoke else [(2, 128, 3136), (2, 512, 196), (16, 192, 3136)]
    for b, D, L in scan_cases:
        label = f"scan fwd+bwd b={b} Di={D} L={L}"
        impls = ("triton", "torch") + (("reference",) if b * D <= 1024 else ())
        res = _run_group(sec, label, impls, lambda impl: scan_speed(b, D, L, impl, dev))
        t = res.get("triton")
        sec.run(f"{label} ratios", lambda: {
            **{f"{o}/triton time": round(res[o]["ms"] / t["ms"], 1) for o in ("torch", "reference") if o in res},
            "status": "ok"} if t else {"status": "error", "note": "no triton result"})
        sec.run(f"{label} triton profile", lambda: scan_speed(b, D, L, "triton", dev, profile=True))
