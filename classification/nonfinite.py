"""Non-finite losses and gradients (--nonfinite skip|stop, --nonfinite-limit): the verdict on every update, the
report that names the epoch, step, loss and largest parameter gradients, and the fp16 GradScaler's collapse.

A diverging run (the official Spatial-Mamba's users saw inf/NaN gradient norms from epoch ~45) must neither
write NaN weights over a good checkpoint nor die without saying where: a bad update is skipped (weights,
EMA and optimizer state untouched) and counted, and N bad updates in a row stop the run with the report.
With fp16 AMP an overflowing gradient is the GradScaler's normal business (it skips the step and halves the
scale); only a scale below SCALE_FLOOR, where the gradients overflow even unscaled, counts as divergence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCALE_FLOOR = 1.0
TOP_GRADS = 5


class NonFiniteError(FloatingPointError):
    """The run stopped on non-finite losses or gradients; the message says where and why."""


@dataclass
class UpdateEvent:
    """What the verdict on one update sees; `where` reads 'epoch 3, step 17/50 (update 167)'."""

    where: str
    loss: float  # this process's last non-finite micro-batch loss, else its last loss
    bad_processes: int  # processes whose loss was non-finite in this update (agreed by a collective)
    world: int
    input_finite: bool | None  # whether this process's batch with the non-finite loss was finite (None: n/a)


def largest_gradients(model, k: int = TOP_GRADS) -> str:
    """The k parameters with the largest gradient norms (non-finite first), as 'name norm, ...'."""
    norms = []
    for name, p in model.named_parameters():
        if p.grad is not None:
            norms.append((name.replace("module.", "", 1).replace("_orig_mod.", ""), p.grad.detach().float().norm().item()))
    norms.sort(key=lambda nv: (math.isfinite(nv[1]), -nv[1] if math.isfinite(nv[1]) else 0.0))
    return ", ".join(f"{n} {v:.4g}" for n, v in norms[:k]) or "(no gradients)"


class NonFiniteGuard:
    """Decides per update: 'step', 'scaler' (fp16 overflow: let the GradScaler skip it) or 'skip'; raises
    NonFiniteError when the policy says stop. Rank 0 prints the reports."""

    def __init__(self, policy: str, limit: int, rank: int = 0):
        self.policy, self.limit, self.rank = policy, limit, rank
        self.in_a_row = 0
        self.total = 0

    def verdict(self, event: UpdateEvent, grad_norm: float, model, scaler) -> str:
        if event.bad_processes == 0 and math.isfinite(grad_norm):
            self.in_a_row = 0
            return "step"
        if event.bad_processes == 0 and scaler is not None:
            return "scaler"
        self._bad(f"non-finite {'loss' if event.bad_processes else 'gradient'} at {event.where}: "
                  f"{self._describe(event, grad_norm)}; largest parameter gradients: {largest_gradients(model)}")
        return "skip"

    def after_scaler(self, event: UpdateEvent, scale: float, model):
        """After a GradScaler-skipped update: a scale under SCALE_FLOOR is a collapse, counted as divergence."""
        if scale < SCALE_FLOOR:
            self._bad(f"GradScaler scale collapse at {event.where}: the fp16 gradients overflow even at scale "
                      f"{scale:.3g} (< {SCALE_FLOOR:g}); largest parameter gradients: {largest_gradients(model)}")

    def _describe(self, event: UpdateEvent, grad_norm: float) -> str:
        text = f"loss {event.loss:.6g}"
        if event.world > 1:
            text += f" (non-finite on {event.bad_processes} of {event.world} processes)"
        if event.input_finite is False:
            text += ", and that input batch holds NaN/Inf values (the data or its normalisation)"
        return text + f", gradient norm {grad_norm:.6g}"

    def _bad(self, message: str):
        self.in_a_row += 1
        self.total += 1
        if self.policy == "stop" or self.in_a_row >= self.limit:
            why = ("--nonfinite stop" if self.policy == "stop"
                   else f"{self.in_a_row} non-finite updates in a row (--nonfinite-limit {self.limit})")
            raise NonFiniteError(f"{message}. Stopping: {why}. The weights were not updated by the bad step and "
                                 f"the checkpoints already written are kept")
        if self.rank == 0:
            print(f"warning: {message}. Update skipped ({self.in_a_row} in a row, {self.total} in this run; the "
                  f"run stops after {self.limit} in a row)", flush=True)


def all_finite(tensors) -> bool:
    """Whether every floating-point tensor of an iterable is finite (weights before they are saved)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if torch.is_floating_point(t))
