"""Whole-model throughput (images/s) and peak memory, inference and training, fp32, at one batch size.

Protocol: one untimed warm-up step at the real shape, then ``repeats`` timed steps; images/s = batch / median
step time. Inference: eval mode under ``torch.inference_mode``. Training: train mode, cross-entropy on random
labels, backward and an AdamW step (the recipes' optimizer), gradients set to None between steps.

Peak memory is what a step needs above what was allocated before it (model, optimizer state and inputs
excluded): on CUDA ``torch.cuda.max_memory_allocated`` during the timed steps minus the memory allocated before
them; on CPU the same count from the profiler's memory events, in one more step after the timed ones
(``benchmarks/memory.py``; the peak resident set misses what a step finds still mapped from the step before).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from benchmarks.memory import allocator_peak_bytes


def time_steps(step, repeats: int, device: str) -> tuple[list[float], float]:
    """Runs ``step`` once untimed, then ``repeats`` times timed; returns (step times in s, peak MiB)."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = allocator_peak_bytes(step)
    return times, max(peak, 0) / 2**20


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def inference_speed(model: nn.Module, batch: int, size: int, repeats: int, device: str) -> dict:
    model.eval()
    x = torch.randn(batch, 3, size, size, device=device)

    def step():
        with torch.inference_mode():
            model(x)

    times, peak = time_steps(step, repeats, device)
    return dict(img_s=batch / _median(times), step_s=_median(times), peak_mib=peak)


def training_speed(model: nn.Module, batch: int, size: int, repeats: int, device: str) -> dict:
    model.train()
    x = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, model.num_classes, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times, peak = time_steps(step, repeats, device)
    return dict(img_s=batch / _median(times), step_s=_median(times), peak_mib=peak)
