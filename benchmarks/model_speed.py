"""Whole-model throughput (images/s) and peak memory, inference and training, fp32, at one batch size.

Protocol: one untimed warm-up step at the real shape, then ``repeats`` timed steps; images/s = batch / median
step time. Inference: eval mode under ``torch.inference_mode``. Training: train mode, cross-entropy on random
labels, backward and an AdamW step (the recipes' optimizer), gradients set to None between steps.

Peak memory is what a step needs above what was resident before it (model, optimizer state and inputs
excluded): on CPU the growth of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` after the warm-up) over its resident set just before the timed steps; on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before them. Run one model per process
(``benchmarks/zoo.py`` does) so that one model's memory does not hide in another's peak.
"""
from __future__ import annotations

import time

import torch
from torch import nn


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


class PeakMemory:
    """Peak memory of what runs between ``start()`` and ``peak_mib()`` (see the module docstring)."""

    def __init__(self, device: str):
        self.device = device
        self.base = 0

    def start(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak-RSS mark (Linux)
                f.write("5")
            self.base = _rss_bytes("VmRSS")

    def peak_mib(self) -> float:
        peak = torch.cuda.max_memory_allocated() if self.device == "cuda" else _rss_bytes("VmHWM")
        return max(peak - self.base, 0) / 2**20


def time_steps(step, repeats: int, device: str, memory: PeakMemory) -> tuple[list[float], float]:
    """Runs ``step`` once untimed, then ``repeats`` times timed; returns (step times in s, peak MiB)."""
    step()
    memory.start()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times, memory.peak_mib()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def inference_speed(model: nn.Module, batch: int, size: int, repeats: int, device: str) -> dict:
    model.eval()
    x = torch.randn(batch, 3, size, size, device=device)

    def step():
        with torch.inference_mode():
            model(x)

    times, peak = time_steps(step, repeats, device, PeakMemory(device))
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

    times, peak = time_steps(step, repeats, device, PeakMemory(device))
    return dict(img_s=batch / _median(times), step_s=_median(times), peak_mib=peak)
