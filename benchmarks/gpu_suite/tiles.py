"""Section 6, launch-configuration sweep of the Triton kernels (data for tuning, lowest priority): the polyline
forward and backward at N = 4200 over both tile layouts (flat token tiles, image-row segments) and their tile sizes
/ warps / pipeline stages, and the scan over block lengths / warps. Each configuration's result is compared with
the default configuration's, so a tile that compiles but computes something else shows up as a failure, not as a
speed-up."""
from __future__ import annotations

import torch

from .common import Section, rel_err, time_ms

POLY_CONFIGS = {  # (layout, BLOCK_M, BLOCK_N, num_warps, num_stages or None = the layout's default), both
    # kernels; the wrappers' own choice (None) comes first and is what the others are compared with; the most
    # informative next (the budget may end the list)
    "bf16": [None, ("rows", 16, 16, 4, None), ("rows", 32, 32, 4, None), ("flat", 32, 16, 4, None),
             ("rows", 16, 32, 4, None), ("rows", 32, 16, 4, 2), ("rows", 16, 64, 4, 2), ("rows", 32, 32, 8, None),
             ("flat", 64, 64, 4, 2), ("flat", 128, 32, 8, 2)],
    "fp32": [None, ("rows", 16, 16, 4, None), ("rows", 32, 32, 4, None), ("flat", 32, 32, 8, None),
             ("rows", 16, 32, 4, None), ("rows", 32, 32, 8, None), ("flat", 64, 32, 4, 2)],
}
SCAN_CONFIGS = [(None, None), (256, 2), (512, 4), (1024, 4), (2048, 8), (2048, 16), (4096, 16)]  # (block, warps)


def _poly_inputs(h, w, batch, heads, d, dtype, device):
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, h, w, d, device=device, generator=gen).to(dtype) for _ in range(3))
    la, lb = (-0.3 * torch.rand(batch, heads, h, w, device=device, generator=gen) for _ in range(2))
    g = torch.randn(batch, heads, h, w, d, device=device, generator=gen).to(dtype)
    return (q, k, v, la, lb), g


def poly_config(inputs, g, cfg, default, device) -> dict:
    from kernels.polyline_attention.triton_impl import triton_full_backward, triton_full_forward

    config = None if cfg is None else dict(zip(("layout", "BLOCK_M", "BLOCK_N", "num_warps", "num_stages"), cfg))
    fwd = triton_full_forward(*inputs, config=config)
    bwd = triton_full_backward(g, *inputs, *fwd[1:], config=config)
    fwd_ms = time_ms(lambda: triton_full_forward(*inputs, config=config), device)
    bwd_ms = time_ms(lambda: triton_full_backward(g, *inputs, *fwd[1:], config=config), device)
    rec = {"fwd_ms": round(fwd_ms, 3), "bwd_ms": round(bwd_ms, 3)}
    if default is None:
        return rec, (fwd[0], bwd)
    err = max([rel_err(fwd[0], default[0])] + [rel_err(a, b) for a, b in zip(bwd, default[1])])
    rec.update(vs_default_rel=f"{err:.1e}", status="ok" if err < 1e-2 else "fail")
    return rec, None


def scan_config(inputs, g, block, warps, default, device) -> dict:
    from kernels.selective_scan.triton_impl import selective_scan_triton_bwd, selective_scan_triton_fwd

    h = selective_scan_triton_fwd(*inputs, block_l=block, num_warps=warps)
    grads = selective_scan_triton_bwd(g, *inputs, block_l=block, num_warps=warps, h=h)
    fwd_ms = time_ms(lambda: selective_scan_triton_fwd(*inputs, block_l=block, num_warps=warps), device)
    bwd_ms = time_ms(lambda: selective_scan_triton_bwd(g, *inputs, block_l=block, num_warps=warps, h=h), device)
    rec = {"fwd_ms": round(fwd_ms, 3), "bwd_ms": round(bwd_ms, 3)}
    if default is None:
        return rec, (h, grads)
    err = max([rel_err(h, default[0])] + [rel_err(a, b) for a, b in zip(grads, default[1])])
    rec.update(vs_default_rel=f"{err:.1e}", status="ok" if err < 1e-4 else "fail")
    return rec, None


def _sweep(sec: Section, label: str, configs, case):
    """Runs ``case(cfg, default)`` for each configuration; the first one's outputs are the default."""
    default = {}

    def first(cfg):
        rec, default["out"] = case(cfg, None)
        return rec

    for i, cfg in enumerate(configs):
        if i == 0:
            if not sec.run(f"{label} wrapper default", lambda: first(cfg)) or "out" not in default:
                return
        else:
            sec.run(f"{label} {cfg}", lambda: case(cfg, default["out"])[0])


def run(sec: Section) -> None:
    dev, smoke = sec.device, sec.smoke
    h, w, batch, heads, d = (6, 7, 1, 2, 16) if smoke else (60, 70, 8, 8, 32)
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        if smoke and dname == "bf16":
            dtype = torch.float16  # bf16 dots are wrong under the interpreter; fp16 takes the same path
        inputs, g = _poly_inputs(h, w, batch, heads, d, dtype, dev)
        configs = [None, ("flat", 16, 16, 1, None), ("rows", 16, 16, 1, None)] if smoke else POLY_CONFIGS[dname]
        _sweep(sec, f"polyline N={h * w} B={batch} {dname} (layout, BM, BN, warps, stages)", configs,
               lambda cfg, default: poly_config(inputs, g, cfg, default, dev))
    b, D, L = (1, 4, 64) if smoke else (16, 192, 3136)
    gen = torch.Generator(device=dev).manual_seed(0)
    kw = dict(device=dev, generator=gen)
    inputs = (torch.randn(b, D, L, **kw), torch.randn(b, D, L, **kw) - 1, -torch.rand(D, 1, **kw) - 0.1,
              torch.randn(b, 1, L, **kw), torch.randn(D, **kw))
    g = torch.randn(b, D, 1, L, **kw)
    configs = [(None, None), (32, 1)] if smoke else SCAN_CONFIGS
    _sweep(sec, f"scan b={b} Di={D} L={L} (block, warps)", configs,
           lambda cfg, default: scan_config(inputs, g, *cfg, default, dev))
