"""Section 3, whole-model throughput: images/s of inference and of a training step (forward, cross-entropy, backward,
fused AdamW step) and the training step's peak memory, under bf16 autocast (fp32 in --smoke) with channels_last
inputs and weights; eager for every tiny and small model (and PPMA-T with the dense reference attention, the
official-style path), then ``torch.compile`` for as many as the section's time allows."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .common import Section, peak_mib, sync

MODELS = ("ppma_tiny", "rmt_tiny", "p2t_tiny", "pacavit_tiny", "mpvit_tiny", "spatial_mamba_tiny",
          "ppma_small", "rmt_small", "p2t_small", "pacavit_small", "mpvit_small", "spatial_mamba_small")
SMOKE_MODELS = ("ppma_tiny",)


def _build(name: str, device, **kwargs):
    import timm

    import models  # noqa: F401  (registers the backbones)

    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).to(device).to(memory_format=torch.channels_last)


def _timed_steps(step, device, steps: int) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def train_speed(name: str, batch: int, size: int, device, amp, compile_backend: str | None = None,
                steps: int = 10, **model_kwargs) -> dict:
    model = _build(name, device, **model_kwargs).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    net = torch.compile(model, backend=compile_backend) if compile_backend else model
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    losses = []

    def step():
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    t0 = time.perf_counter()
    step()  # compilation, cudnn autotuning, allocator growth
    sync(device)
    first_s = time.perf_counter() - t0
    mem = peak_mib(step, device)
    per_step = _timed_steps(step, device, steps)
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    rec = {"train_img_s": round(batch / per_step, 1), "train_peak_mib": None if mem is None else round(mem),
           "first_step_s": round(first_s, 1), "loss_finite": finite}
    if not finite:
        rec["status"] = "fail"
    return rec


def infer_speed(name: str, batch: int, size: int, device, amp, steps: int = 10, **model_kwargs) -> dict:
    model = _build(name, device, **model_kwargs).eval()
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            model(x)

    step()
    return {"infer_img_s": round(batch / _timed_steps(step, device, steps), 1)}


def run(sec: Section, compile_backend: str) -> None:
    dev, smoke = sec.device, sec.smoke
    names = SMOKE_MODELS if smoke else MODELS
    # smoke: fp32 (bf16 autocast on a CPU without bf16 units measures emulation, not the code)
    batch, size, steps, amp = (2, 64, 2, None) if smoke else (128, 224, 10, torch.bfloat16)
    # cuDNN's autotuning (benchmark=True, the trainer's setting) took ~20 s per model on the first H200 run, a
    # fifth of the section's budget: the suite times cuDNN's heuristic choices instead
    torch.backends.cudnn.benchmark = False
    for name in names:
        sec.run(f"{name} eager", lambda: {**infer_speed(name, batch, size, dev, amp, steps),
                                          **train_speed(name, batch, size, dev, amp, steps=steps)})
    sec.run("ppma_tiny eager, dense reference attention (official-style)",
            lambda: {**infer_speed("ppma_tiny", batch, size, dev, amp, steps, attn_impl="reference"),
                     **train_speed("ppma_tiny", batch, size, dev, amp, steps=steps, attn_impl="reference")})
    # the models with custom ops (the Triton kernels) first: they are the ones most likely to break
    order = sorted(names, key=lambda n: not n.startswith(("ppma_", "spatial_mamba_")))
    for name in (order[:1] if smoke else order):
        sec.run(f"{name} torch.compile({compile_backend})",
                lambda: train_speed(name, batch, size, dev, amp, compile_backend, steps=steps), min_left_s=20)
