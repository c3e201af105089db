"""Optimizer, learning-rate schedule and EMA decay, computed and stepped as the official trainers do.

The schedule is timm's `create_scheduler_v2`; what differs between the official loops is only *when* it is
stepped, which `Stepper` expresses with two options:

- `sched_on_updates` (timm's name): step after every optimizer update (Swin / Spatial-Mamba) instead of after
  every epoch (DeiT, RMT, PPMA, P2T, MPViT, timm's train.py by default).
- `sched_lag`: step with the index of the epoch / update just finished instead of the next one. DeiT-derived
  loops call `lr_scheduler.step(epoch)` after epoch `epoch` (timm's train.py: `step(epoch + 1)`) and Swin-derived
  ones `step_update(epoch * n + idx)` after update `idx` (timm: the update count), so every epoch / update runs
  at the lr meant for the one before: the warmup starts one step late. The configs reproduce it where the
  official code has it; `--no-sched-lag` is the fix.

`replay` runs a config's schedule and EMA decay for a whole run without a model or data, through the same
`Stepper` calls as the training loop (tests/test_schedules.py compares it with the official schedules).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2, optimizer_kwargs
from timm.scheduler import create_scheduler_v2, scheduler_kwargs
from timm.utils import ModelEmaV3

from classification.config import ConfigError


# ---------------------------------------------------------------------------------------------- scaling
def batch_ratio(args, global_batch: int) -> float:
    """global_batch / lr_base_size (its square root with lr_base_scale 'sqrt'); 1 when lr_base_size is null."""
    if not args.lr_base_size:
        return 1.0
    ratio = global_batch / args.lr_base_size
    return math.sqrt(ratio) if args.lr_base_scale == "sqrt" else ratio


def scaled_lrs(args, global_batch: int) -> dict[str, float]:
    """The lr, warmup_lr and min_lr used. warmup_lr / min_lr scale like the lr only with
    auto_scale_warmup_min_lr (PaCa's timm fork; Spatial-Mamba's Swin trainer does the same)."""
    ratio = batch_ratio(args, global_batch)
    other = ratio if args.auto_scale_warmup_min_lr else 1.0
    return {"lr": args.lr * ratio, "warmup_lr": args.warmup_lr * other, "min_lr": args.min_lr * other}


def ema_decay(args, global_batch: int) -> float:
    """model_ema_decay, raised to global_batch / model_ema_decay_base_size when that is set (PPMA / RMT:
    0.99996 ** (global_batch / 512), i.e. the same decay per image at any batch)."""
    if not args.model_ema_decay_base_size:
        return args.model_ema_decay
    return args.model_ema_decay ** (global_batch / args.model_ema_decay_base_size)


def ema_step(args, num_updates: int) -> int | None:
    """The `step` passed to ModelEmaV3.update. timm's EMA copies the weights at step 1 (decay 0) and warms the
    decay up when asked; the official trainers' ModelEma applies the constant decay from the first update,
    which ModelEmaV3 does when no step is given."""
    return num_updates if args.model_ema_warmup else None


# ---------------------------------------------------------------------------------------------- builders
def build_optimizer(args, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """timm's optimizer factory with timm's kwargs helper (eps / betas / layer decay for every optimizer)."""
    cfg = argparse.Namespace(**vars(args))
    cfg.lr = lr
    cfg.opt_args = args.opt_kwargs
    kwargs = optimizer_kwargs(cfg)
    if kwargs.get("betas") is not None:
        kwargs["betas"] = tuple(kwargs["betas"])
    return create_optimizer_v2(model, **kwargs)


def build_scheduler(args, optimizer, updates_per_epoch: int, lrs: dict[str, float]):
    """(timm scheduler, epochs to train). The epoch count is timm's: `epochs` + the warmup when
    warmup_prefix + cooldown_epochs (timm's train.py trains the cooldown; DeiT-style loops stop at `epochs`,
    so their configs carry cooldown_epochs 0)."""
    kwargs = scheduler_kwargs(args)
    kwargs.update(warmup_lr=lrs["warmup_lr"], min_lr=lrs["min_lr"], noise_seed=args.seed)
    scheduler, num_epochs = create_scheduler_v2(optimizer, **kwargs, updates_per_epoch=updates_per_epoch)
    if scheduler is None:
        raise ConfigError("sched 'none' is not supported: use 'constant' for a fixed lr")
    return scheduler, int(num_epochs)


def build_ema(args, model: nn.Module, global_batch: int) -> ModelEmaV3:
    device = torch.device("cpu") if args.model_ema_force_cpu else None
    return ModelEmaV3(model, decay=ema_decay(args, global_batch), use_warmup=args.model_ema_warmup, device=device)


# ---------------------------------------------------------------------------------------------- stepping
class Stepper:
    """Steps a timm scheduler as the training loop of the recipe does (see the module docstring)."""

    def __init__(self, scheduler, args, updates_per_epoch: int):
        self.scheduler = scheduler
        self.lag = 1 if args.sched_lag else 0
        self.updates_per_epoch = updates_per_epoch

    def after_update(self, num_updates: int):
        """After an optimizer update; num_updates counts the updates of the run so far (1 after the first)."""
        self.scheduler.step_update(num_updates=max(num_updates - self.lag, 0))  # no-op when stepped per epoch

    def after_epoch(self, epoch: int, metric: float | None = None):
        """After epoch `epoch` (0-based) and its evaluation."""
        self.scheduler.step(max(epoch + 1 - self.lag, 0), metric)  # no-op when stepped per update

    def seek(self, start_epoch: int):
        """Sets the lr a run starting at `start_epoch` begins with (resume, --start-epoch)."""
        if start_epoch > 0:
            self.after_epoch(start_epoch - 1)
            self.after_update(start_epoch * self.updates_per_epoch)


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class Trace:
    """A whole run's schedule: lr (and EMA decay, None without EMA) of every update, per epoch."""

    num_epochs: int
    updates_per_epoch: int
    lr: list[list[float]] = field(default_factory=list)
    ema_decay: list[list[float]] | None = None

    def epoch_mean_lr(self) -> list[float]:
        """What the DeiT log calls train_lr (and this trainer's log.txt): the mean lr over an epoch's updates."""
        return [sum(e) / len(e) for e in self.lr]


def replay(args, world: int, updates_per_epoch: int, start_epoch: int = 0) -> Trace:
    """Runs the schedule of `args` on `world` processes from `start_epoch` to the end, stepping it through the
    same builders and Stepper calls as the trainer; no model, data or training."""
    global_batch = args.batch_size * world * args.accum_iter
    lrs = scaled_lrs(args, global_batch)
    model = nn.Linear(1, 1)
    optimizer = build_optimizer(args, model, lrs["lr"])
    scheduler, num_epochs = build_scheduler(args, optimizer, updates_per_epoch, lrs)
    stepper = Stepper(scheduler, args, updates_per_epoch)
    stepper.seek(start_epoch)
    ema = build_ema(args, model, global_batch) if args.model_ema else None
    trace = Trace(num_epochs, updates_per_epoch, ema_decay=[] if ema is not None else None)
    for epoch in range(start_epoch, num_epochs):
        lr, decay = [], []
        for i in range(updates_per_epoch):
            num_updates = epoch * updates_per_epoch + i + 1
            lr.append(optimizer.param_groups[0]["lr"])
            if ema is not None:
                decay.append(ema.get_decay(ema_step(args, num_updates)))
            stepper.after_update(num_updates)
        stepper.after_epoch(epoch, metric=0.0)
        trace.lr.append(lr)
        if ema is not None:
            trace.ema_decay.append(decay)
    return trace
