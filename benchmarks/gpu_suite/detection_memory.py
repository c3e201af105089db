"""Section 4, detection-size memory: the downstream backbones (``features_only=True, out_norm=True``) forward +
backward at a 1344 x 800 input, batch 2, as in Mask R-CNN training: peak memory and time per step, ours
against the same model with the official-style dense attention (PPMA-T) or the chunked torch scan
(Spatial-Mamba-T; its sequential reference is far too slow at 67,200 tokens). Then every family's tiny
backbone at 1216 x 800 under bf16 and fp16 autocast: outputs and gradients must be finite."""
from __future__ import annotations

import time

import torch

from .common import Section, peak_mib, sync

OURS_FP32, OURS_BF16 = "ours (triton), fp32", "ours (triton), bf16 autocast"
DENSE_FP32, DENSE_BF16 = "dense reference attention, fp32", "dense reference attention, bf16 autocast"
OURS_BF16_SELECTIVE = "ours (triton), bf16 autocast, selective checkpointing"
SCAN_TRITON_FP32, SCAN_TRITON_BF16 = "ours (triton scan), fp32", "ours (triton scan), bf16 autocast"
SCAN_TORCH_BF16 = "torch chunked scan, bf16 autocast"
VARIANTS = (  # (model, label, model kwargs (+ "checkpointing": set_grad_checkpointing's mode), autocast dtype)
    ("ppma_tiny", OURS_FP32, {}, None),
    ("ppma_tiny", OURS_BF16, {}, torch.bfloat16),
    ("ppma_tiny", DENSE_BF16, {"attn_impl": "reference"}, torch.bfloat16),
    ("ppma_tiny", DENSE_FP32, {"attn_impl": "reference"}, None),
    ("ppma_tiny", OURS_BF16_SELECTIVE, {"checkpointing": "selective"}, torch.bfloat16),
    ("spatial_mamba_tiny", SCAN_TRITON_FP32, {}, None),
    ("spatial_mamba_tiny", SCAN_TRITON_BF16, {}, torch.bfloat16),
    ("spatial_mamba_tiny", SCAN_TORCH_BF16, {"scan_impl": "torch"}, torch.bfloat16),
)
COMPARISONS = (  # (record name, model, the variant measured, the variant it is measured against), by label
    ("ppma_tiny fp32: ours vs dense", "ppma_tiny", OURS_FP32, DENSE_FP32),
    ("ppma_tiny bf16: ours vs dense", "ppma_tiny", OURS_BF16, DENSE_BF16),
    ("ppma_tiny bf16: selective checkpointing vs none", "ppma_tiny", OURS_BF16_SELECTIVE, OURS_BF16),
    ("spatial_mamba_tiny bf16: triton vs torch scan", "spatial_mamba_tiny", SCAN_TRITON_BF16, SCAN_TORCH_BF16),
)


def backbone_step(name: str, batch: int, hw: tuple[int, int], device, amp, checkpointing=False, **kwargs) -> dict:
    import timm

    import models  # noqa: F401  (registers the backbones)

    torch.manual_seed(0)
    model = timm.create_model(name, features_only=True, out_norm=True, **kwargs).to(device).train()
    model.set_grad_checkpointing(checkpointing)
    x = torch.randn(batch, 3, *hw, device=device)

    def step():
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            feats = model(x)
        sum(f.float().square().mean() for f in feats).backward()
        model.zero_grad(set_to_none=True)

    step()
    mem = peak_mib(step, device)
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    return {"peak_gib": None if mem is None else round(mem / 1024, 2),
            "step_s": round(time.perf_counter() - t0, 3)}


FAMILIES = ("ppma_tiny", "p2t_tiny", "pacavit_tiny", "mpvit_tiny", "spatial_mamba_tiny")


def finite_case(name: str, batch: int, hw: tuple[int, int], device, amp) -> dict:
    """Numerical safety at the size detectors train at: the backbone's outputs and every parameter gradient
    finite under half-precision autocast (fp16 overflows where bf16 does not)."""
    import timm

    import models  # noqa: F401  (registers the backbones)

    torch.manual_seed(0)
    model = timm.create_model(name, features_only=True, **({"out_norm": True} if name.startswith(("ppma", "spatial"))
                                                           else {})).to(device).train()
    x = torch.randn(batch, 3, *hw, device=device)
    with torch.autocast(device.type, dtype=amp):
        feats = model(x)
    loss = sum(f.float().square().mean() for f in feats)
    loss.backward()
    bad_out = [i for i, f in enumerate(feats) if not torch.isfinite(f).all()]
    bad_grad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return {"outputs_finite": not bad_out, "grads_finite": not bad_grad, "loss": round(loss.item(), 4),
            "note": (f"non-finite outputs {bad_out}; grads {bad_grad[:4]}" if bad_out or bad_grad else ""),
            "status": "ok" if not (bad_out or bad_grad) else "fail"}


def run(sec: Section) -> None:
    batch, hw = (1, (64, 96)) if sec.smoke else (2, (800, 1344))
    res = {}
    for name, label, kwargs, amp in VARIANTS:
        if sec.smoke and amp is not None:
            continue  # bf16 autocast on a CPU without bf16 units measures emulation, not the code
        rec = sec.run(f"{name} {label} {hw[1]}x{hw[0]} b{batch}",
                      lambda: backbone_step(name, batch, hw, sec.device, amp, **kwargs))
        if rec and rec["status"] == "ok":
            res[(name, label)] = rec

    def ratio(name, ours, other):
        a, b = res.get((name, ours)), res.get((name, other))
        if not (a and b):
            return {"status": "skip", "note": "a variant did not run"}
        if a["peak_gib"] is None or b["peak_gib"] is None:
            return {"status": "skip", "note": "memory is measured on CUDA only"}
        return {"ours/other peak mem": round(a["peak_gib"] / b["peak_gib"], 3),
                "other/ours time": round(b["step_s"] / a["step_s"], 2)}

    if not sec.smoke:  # (on CPU half autocast is emulated: slow and not what detectors train with)
        for name in FAMILIES:
            for amp in (torch.bfloat16, torch.float16):
                sec.run(f"{name} finite under {str(amp)[6:]} autocast, 1216x800 b1",
                        lambda: finite_case(name, 1, (800, 1216), sec.device, amp))
    for title, name, ours, other in COMPARISONS:
        sec.run(title, lambda: ratio(name, ours, other))
