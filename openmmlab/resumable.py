"""What a run killed at any step needs to continue exactly where it stopped (mmengine alone restores the
weights, optimiser, schedulers and counters, and replays the data; not these two):

- :class:`ResumableEpochBasedTrainLoop`: mmengine's epoch loop resumes only at an epoch's end (a checkpoint
  from inside an epoch would train that epoch again from its first batch). This one skips the batches of the
  epoch already trained, by loading them as mmengine's iteration loop does (the sampler order and the data
  pipeline's random augmentations then continue as in the uninterrupted run), and stops inside an epoch
  when ``stop_training`` is set during it (:class:`openmmlab.preemption.PreemptionHook`) without running
  the epoch's end (epoch hooks, validation);
- :class:`StepSeedHook`: torch's RNG (dropout, drop path, RoI samplers) reseeded at every training step from
  the run's seed and the iteration, as fairseq does per update, and numpy's and Python's (the data pipeline's
  random augmentations) at every epoch's start from the seed and the epoch: a resumed run draws the same
  random numbers as the uninterrupted one, which mmengine (no RNG state in its checkpoints) does not give.
  Exact for data loaded in the training process (``num_workers=0``) or by workers started every epoch
  (mmengine seeds them); persistent workers' random state is not in any checkpoint.

:func:`make_resumable` puts both in a training config (``<task>/train.py`` does it for every run).
"""
from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop

from . import preemption  # noqa: F401  (registers PreemptionHook, which make_resumable names)

__all__ = ["ResumableEpochBasedTrainLoop", "StepSeedHook", "make_resumable", "step_seed"]


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes and stops inside an epoch (see the module docstring)."""

    def run(self):
        self.runner.call_hook("before_train")
        while self._epoch < self._max_epochs and not self.stop_training:
            if not self._run_epoch():
                break  # stopped inside the epoch: no validation of a partial epoch
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs)):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train")
        return self.runner.model

    def run_epoch(self) -> None:
        self._run_epoch()

    def _run_epoch(self) -> bool:
        """One epoch from the first batch not trained yet; False if it stopped before the epoch's end."""
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        done = self._batches_done()
        for idx, data_batch in enumerate(self.dataloader):
            if idx < done:
                continue  # loaded all the same: the data pipeline's random state advances as it did
            self.run_iter(idx, data_batch)
            if self.stop_training:
                return False
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1
        return True

    def _batches_done(self) -> int:
        """Batches of the current epoch trained before a resume (0 unless resumed inside an epoch)."""
        per_epoch = len(self.dataloader)
        done = self._iter - self._epoch * per_epoch
        if not 0 <= done <= per_epoch:
            raise RuntimeError(f"resumed at iteration {self._iter} of epoch {self._epoch + 1}, which does not fall in "
                               f"that epoch with {per_epoch} iterations per epoch: was the checkpoint written with "
                               f"another number of processes or batch size?")
        if done:
            print_log(f"resuming inside epoch {self._epoch + 1}: skipping its first {done} of {per_epoch} batches",
                      logger="current")
        return done


def step_seed(seed: int, *counters: int) -> int:
    """A 32-bit seed (numpy's limit) for one training step or epoch: independent streams for every
    (seed, counters) tuple."""
    return int(np.random.SeedSequence([seed, *counters]).generate_state(1)[0])


@HOOKS.register_module()
class StepSeedHook(Hook):
    """Reseeds torch's RNGs (CPU and CUDA) before every training step, numpy's, Python's and torch's before
    every training epoch, from ``runner.seed`` (per rank with ``randomness.diff_rank_seed``) and the counter, so
    the random numbers do not depend on what ran before in this process (see the module docstring)."""

    priority = "VERY_HIGH"  # before any hook that might draw random numbers

    def before_train_epoch(self, runner) -> None:
        # the epoch's batches are loaded after this (and replayed by a resumed run): the augmentations repeat;
        # torch too: the epoch's DataLoader iterator draws its workers' base seed from it
        seed = step_seed(runner.seed, runner.epoch, _EPOCH_STREAM)
        np.random.seed(seed)
        random.seed(seed)
        torch.manual_seed(seed)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        torch.manual_seed(step_seed(runner.seed, runner.iter))


_EPOCH_STREAM = 1  # a third entropy word: epoch seeds come from other streams than step seeds


def make_resumable(cfg: Config) -> None:
    """A training config whose run can be killed or stopped at any step and resumed exactly: the resumable
    epoch loop for mmengine's, :class:`StepSeedHook` and :class:`~openmmlab.preemption.PreemptionHook`."""
    loop = cfg.get("train_cfg") or {}
    if loop.get("type") == "EpochBasedTrainLoop":
        loop.type = "ResumableEpochBasedTrainLoop"
    elif "type" not in loop and loop.get("by_epoch"):  # mmengine's short form of the same loop
        loop.pop("by_epoch")
        loop.type = "ResumableEpochBasedTrainLoop"
    hooks = list(cfg.get("custom_hooks") or [])
    for name in ("StepSeedHook", "PreemptionHook"):
        if not any(h.get("type") == name for h in hooks):  # a config that names one keeps its arguments
            hooks.append(dict(type=name))
    cfg.custom_hooks = hooks
