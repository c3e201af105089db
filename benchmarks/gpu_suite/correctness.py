"""Section 1, correctness on the device: each fast kernel path against an independent fp64 reference (the dense
official-style attention, the sequential scan under plain autograd, the per-pixel state fusion), forward and
every gradient, and whole tiny models: device logits against CPU logits of the same weights."""
from __future__ import annotations

import copy

import torch

from .common import Section, fmt_errs, judge, rel_err, seeded

# ||fast - ref|| / ||ref|| allowed per input dtype (fp32 IEEE dots land near 1e-6; half dots at 1e-3..1e-2)
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TINY_MODELS = ("ppma_tiny", "rmt_tiny", "p2t_tiny", "pacavit_tiny", "mpvit_tiny", "spatial_mamba_tiny")


def _grads(fn, inputs, g):
    """(output, gradients of <output, g> w.r.t. every input), all detached."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs, g.to(out.dtype))
    return out.detach(), [x.detach() for x in grads]


def _errs(names, got, ref):
    return {n: rel_err(a, b) for n, a, b in zip(names, got, ref)}


# ------------------------------------------------------------------------------------ polyline attention
def _polyline_inputs(h, w, d, device, seed, batch=1, heads=2):
    gen = seeded(seed, device)
    f64 = dict(device=device, dtype=torch.float64, generator=gen)
    q, k, v = (torch.randn(batch, heads, h, w, d, **f64) for _ in range(3))
    log_a = -0.6 * torch.rand(batch, heads, h, w, **f64)  # decays in (0.55, 1]: long-range paths matter
    log_b = -0.6 * torch.rand(batch, heads, h, w, **f64)
    g = torch.randn(batch, heads, h, w, d, **f64)
    return [q, k, v, log_a, log_b], g


def polyline_case(h: int, w: int, d: int, dtype: torch.dtype, device, mode: str = "full") -> dict:
    from kernels.polyline_attention import polyline_attention, polyline_attention_reference

    inputs, g = _polyline_inputs(h, w, d, device, seed=h * 1000 + w + d)
    lowered = [t.to(dtype) for t in inputs[:3]] + [t.float() for t in inputs[3:]]  # decays stay fp32
    ref_out, ref_grads = _grads(
        lambda *x: polyline_attention_reference(*x, mode=mode, scale=d ** -0.5), [t.double() for t in lowered], g)
    names = ("out", "dq", "dk", "dv", "dlog_a", "dlog_b")
    res, outs = {}, {}
    impls = ("triton", "torch") if mode == "full" else ("torch",)
    for impl in impls:
        out, grads = _grads(lambda *x: polyline_attention(*x, mode=mode, scale=d ** -0.5, impl=impl), lowered, g)
        res[impl] = _errs(names, [out, *grads], [ref_out, *ref_grads])
        outs[impl] = out
    rec = {"vs": "fp64 dense reference", **judge({f"{i}.{k}": v for i, e in res.items() for k, v in e.items()},
                                                TOL[dtype])}
    for impl, errs in res.items():
        rec[impl] = fmt_errs(errs)
    if "triton" in outs:  # a second forward must give the same bits (a moving result is a race)
        again = polyline_attention(*lowered, mode=mode, scale=d ** -0.5, impl="triton")
        rec["triton_rerun_maxdiff"] = float((again.float() - outs["triton"].float()).abs().max())
        rec["triton_vs_torch"] = f"{rel_err(outs['triton'], outs['torch']):.1e}"
        if rec["triton_rerun_maxdiff"] != 0.0:
            rec["status"] = "fail"
    return rec


# ------------------------------------------------------------------------------------ selective scan
def _scan_inputs(b, D, N, L, device, seed):
    gen = seeded(seed, device)
    f64 = dict(device=device, dtype=torch.float64, generator=gen)
    u = torch.randn(b, D, L, **f64)
    delta = torch.randn(b, D, L, **f64) - 1.0
    A = -(torch.rand(D, N, **f64) + 0.1)
    B = torch.randn(b, N, L, **f64)
    bias = 0.5 * torch.randn(D, **f64)
    g = torch.randn(b, D, N, L, **f64)
    return [u, delta, A, B, bias], g


def scan_case(b: int, D: int, N: int, L: int, dtype: torch.dtype, device) -> dict:
    from kernels.selective_scan import selective_scan, selective_scan_ref

    inputs, g = _scan_inputs(b, D, N, L, device, seed=L * 10 + N)
    lowered = [inputs[0].to(dtype), inputs[1].to(dtype), inputs[2].float(), inputs[3].to(dtype), inputs[4].float()]
    # the reference: the sequential loop under plain autograd, in fp64 (independent of every hand-written adjoint)
    ref_out, ref_grads = _grads(lambda *x: selective_scan_ref(*x, delta_softplus=True),
                                [t.double() for t in lowered], g)
    names = ("h", "du", "ddelta", "dA", "dB", "ddelta_bias")
    rec, errs_all = {"vs": "fp64 sequential loop + autograd"}, {}
    for impl in ("triton", "torch"):
        out, grads = _grads(lambda *x: selective_scan(*x, delta_softplus=True, impl=impl), lowered, g)
        errs = _errs(names, [out, *grads], [ref_out, *ref_grads])
        errs_all.update({f"{impl}.{k}": v for k, v in errs.items()})
        rec[impl] = fmt_errs(errs)
    # half inputs are rounded before the fp64 reference sees them, so the fp32 states get fp32's tolerance; the
    # gradients of u, delta and B are returned in the inputs' dtype, i.e. rounded to it
    rounded = {k: v for k, v in errs_all.items() if k.split(".")[1] in ("du", "ddelta", "dB")}
    exact = {k: v for k, v in errs_all.items() if k not in rounded}
    verdict = judge(exact, TOL[torch.float32])
    if dtype != torch.float32:
        half = judge(rounded, TOL[dtype])
        verdict = {"max_rel": f"{verdict['max_rel']} (h, dA, dbias); {half['max_rel']} (du, ddelta, dB)",
                   "tol": f"{verdict['tol']}; {half['tol']}",
                   "status": "ok" if verdict["status"] == half["status"] == "ok" else "fail"}
    else:
        verdict = judge(errs_all, TOL[torch.float32])
    return {**verdict, **rec}


# ------------------------------------------------------------------------------------ state fusion
def fusion_case(b: int, C: int, H: int, W: int, device) -> dict:
    from kernels.state_fusion import state_fusion, state_fusion_ref

    gen = seeded(H * 100 + W, device)
    f64 = dict(device=device, dtype=torch.float64, generator=gen)
    inputs = [torch.randn(b, C, H, W, **f64)] + [torch.randn(C, 1, 3, 3, **f64) for _ in range(3)] + \
        [torch.randn(3, **f64)]
    g = torch.randn(b, C, H, W, **f64)
    ref_out, ref_grads = _grads(state_fusion_ref, inputs, g)
    names = ("out", "dh", "dk1", "dk3", "dk5", "dalpha")
    f32 = [t.float() for t in inputs]
    rec, errs_all = {"vs": "fp64 per-pixel taps"}, {}
    variants = {"dilated": (False, "torch"), "folded": (True, "torch")}
    if H * W <= 64:
        variants["matrix"] = (False, "matrix")
    for label, (folded, impl) in variants.items():
        out, grads = _grads(lambda *x: state_fusion(*x, folded=folded, impl=impl), f32, g)
        errs = _errs(names, [out, *grads], [ref_out, *ref_grads])
        errs_all.update({f"{label}.{k}": v for k, v in errs.items()})
        rec[label] = fmt_errs(errs)
    return {**judge(errs_all, TOL[torch.float32]), **rec}


# ------------------------------------------------------------------------------------ whole models
def model_case(name: str, size: int, batch: int, device) -> dict:
    """Eval logits of one set of weights on the device (its default kernel paths: Triton on CUDA) and on the
    CPU (the torch paths), fp32 with TF32 off."""
    import timm

    import models  # noqa: F401  (registers the backbones)

    torch.manual_seed(0)
    cpu_model = timm.create_model(name).eval()
    dev_model = copy.deepcopy(cpu_model).to(device)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = cpu_model(x)
        out = dev_model(x.to(device)).cpu()
    err = rel_err(out, ref)
    return {"device_vs_cpu_rel": f"{err:.1e}", "max_abs": f"{(out - ref).abs().max().item():.1e}",
            "logit_std": f"{ref.std().item():.2f}", "tol": "1e-04", "status": "ok" if err <= 1e-4 else "fail"}


def run(sec: Section) -> None:
    dev, smoke = sec.device, sec.smoke
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    grids = [(5, 7), (4, 4)] if smoke else [(56, 56), (60, 70)]
    dims = [8, 16] if smoke else [32, 64]
    for (h, w) in grids:
        for d in dims:
            for dname, dt in DTYPES.items():
                sec.run(f"polyline full {h}x{w} d{d} {dname}", lambda: polyline_case(h, w, d, dt, dev))
    cc = (6, 5) if smoke else (56, 56)
    sec.run(f"polyline criss-cross {cc[0]}x{cc[1]} d{dims[0]} fp32",
            lambda: polyline_case(*cc, dims[0], torch.float32, dev, mode="criss_cross"))
    lengths = [37, 5] if smoke else [3136, 196]
    for L in lengths:
        for N in (1, 4):
            for dname in ("fp32", "bf16"):
                sec.run(f"scan L{L} d_state {N} {dname}",
                        lambda: scan_case(2, 3 if smoke else 48, N, L, DTYPES[dname], dev))
    for (H, W) in ([(9, 11), (7, 8)] if smoke else [(56, 56), (14, 14), (7, 8)]):
        sec.run(f"state fusion {H}x{W}", lambda: fusion_case(2, 3 if smoke else 64, H, W, dev))
    size, batch = (96, 1) if smoke else (224, 2)
    for name in (TINY_MODELS[:2] if smoke else TINY_MODELS):
        sec.run(f"model {name} {size}px eval logits", lambda: model_case(name, size, batch, dev))
