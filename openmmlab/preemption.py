"""SIGTERM / SIGINT during training: a checkpoint at the next step boundary, then a clean stop.

Schedulers send SIGTERM before they kill a job (Slurm: preemption, time limit; then SIGKILL after its
``KillWait``), Ctrl-C sends SIGINT. While training, :class:`PreemptionHook` only notes the signal; after
the running step (``after_train_iter``, or when a validation in progress ends: ``after_val_epoch``) every
rank agrees on it (one all-reduce of the flag, so that a signal seen by one rank stops them all at the same
step), rank 0 writes ``iter_<N>.pth`` with mmengine's ``runner.save_checkpoint`` and points
``<work_dir>/last_checkpoint`` at it (what ``--resume`` reads), and the loop stops. ``<task>/train.py``
then exits with 128 + the signal number (143 SIGTERM, 130 SIGINT), the status of a process ended by that
signal, so that a wrapper tells "stopped, resume me" from "finished" (0). Further signals change nothing
(until the process exits, once it stopped); SIGKILL still kills at once.

Under ``dist_train.sh`` torchrun stands between the scheduler and the workers: when it gets the signal it
forwards it to them and waits for them (``--shutdown-timeout``, 30 s by default) before killing them, and its
own exit status is not the workers' (see the task READMEs for the measured statuses).
"""
from __future__ import annotations

import os
import signal

import torch
from mmengine.dist import all_reduce, barrier, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ["PreemptionHook", "preemption_exit_code"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Checkpoint and stop at the next step boundary after SIGTERM / SIGINT (see the module docstring)."""

    priority = "LOWEST"  # after CheckpointHook: a checkpoint it just wrote is not written twice

    def __init__(self):
        self.received = 0   # the signal this process got (set by the handler)
        self.stopped_by = 0  # the signal the ranks agreed to stop on
        self._previous = {}

    def before_train(self, runner) -> None:
        self._previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}

    def after_train(self, runner) -> None:
        if self.stopped_by:
            # ignored until the process exits: torchrun signals the ranks still running when the first one exits,
            # which would kill a rank that is only tearing down (status -15, not 143); Python restores the default
            # action of its own handlers at interpreter shutdown, but not SIG_IGN
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            return
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        self.received = signum  # nothing else: the step in progress finishes first

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._stop_if_signalled(runner, done=runner.iter + 1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        # only a validation inside training (not runner.val(), not the last one), whose loop has counted the steps
        if self._previous and runner.train_loop.iter < runner.train_loop.max_iters:
            self._stop_if_signalled(runner, done=runner.iter)

    def _stop_if_signalled(self, runner, done: int) -> None:
        signum = self._agreed_signal()
        if not signum or self.stopped_by:
            return
        self.stopped_by = signum
        path = self._save(runner, done)
        runner.logger.warning(f"{signal.Signals(signum).name}: checkpoint {path} written after iteration {done}; "
                              f"stopping (exit status {128 + signum}); continue with --resume")
        runner.train_loop.stop_training = True

    def _agreed_signal(self) -> int:
        """The largest signal number any rank received (0: none); every rank calls it at the same step."""
        if get_world_size() == 1:
            return self.received
        flag = torch.tensor([self.received], dtype=torch.int64)
        all_reduce(flag, op="max")
        return int(flag.item())

    @staticmethod
    def _save(runner, done: int) -> str:
        """``iter_<done>.pth`` in the work dir, and ``last_checkpoint`` naming it, as CheckpointHook does; the
        counters are given explicitly: the loop may be epoch-based and inside an epoch."""
        path = os.path.join(runner.work_dir, f"iter_{done}.pth")
        if runner.message_hub.get_info("last_ckpt") != path:  # CheckpointHook wrote it at this step already
            runner.save_checkpoint(runner.work_dir, os.path.basename(path), by_epoch=False,
                                   meta=dict(epoch=runner.epoch, iter=done))
            if is_main_process():
                _write_atomically(os.path.join(runner.work_dir, "last_checkpoint"), path)
        barrier()  # no rank exits (and so makes torchrun stop the others) before rank 0 has written it
        return path


def _write_atomically(path: str, text: str) -> None:
    """A kill while writing leaves the previous content, not an empty file (which --resume would read)."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def preemption_exit_code(runner) -> int:
    """128 + the signal number if a :class:`PreemptionHook` of ``runner`` stopped the training, else 0."""
    return next((128 + h.stopped_by for h in runner.hooks if isinstance(h, PreemptionHook) and h.stopped_by), 0)
