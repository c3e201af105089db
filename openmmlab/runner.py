"""mmengine's Runner with strict checkpoint loading, and the test metrics file written once.

:class:`StrictRunner` is mmengine's ``Runner`` except for ``load_checkpoint``, which every load of the
model goes through (``load_from``, ``--resume``, ``test.py CHECKPOINT``): it follows
:func:`openmmlab.checkpoint.load_full_checkpoint` (weights-only reading, official backbone layouts mapped,
any key that does not fit an error naming it) where mmengine's own would only warn; ``--resume`` also needs
the training state (:func:`openmmlab.checkpoint.check_resumable`).
"""
from __future__ import annotations

import json
import os

from mmengine.config import Config
from mmengine.runner import Runner

from .checkpoint import check_resumable, load_full_checkpoint, read_full_checkpoint

__all__ = ["StrictRunner", "build_runner", "write_test_metrics"]


class StrictRunner(Runner):
    """mmengine's ``Runner`` whose checkpoint loads are strict (see the module docstring)."""

    _resuming = False

    def resume(self, filename: str, *args, **kwargs) -> None:
        self._resuming = True  # load_checkpoint then also checks for the training state
        try:
            super().resume(filename, *args, **kwargs)
        finally:
            self._resuming = False

    def load_checkpoint(self, filename: str, map_location="cpu", strict: bool = True, revise_keys=None):
        if not strict or revise_keys:
            raise ValueError("StrictRunner.load_checkpoint loads strictly and maps the keys itself: strict=False "
                             "and revise_keys are not supported")
        checkpoint = read_full_checkpoint(filename, map_location)
        if self._resuming:
            check_resumable(checkpoint, filename)
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        dropped = load_full_checkpoint(self.model, checkpoint, source=filename)
        if dropped:
            self.logger.info(f"ignored the official backbone's unused classifier: {', '.join(dropped)}")
        self._has_loaded = True
        self.logger.info(f"loaded checkpoint {filename} (all keys matched)")
        return checkpoint


def build_runner(cfg: Config) -> StrictRunner:
    if cfg.get("runner_type"):
        raise ValueError(f"runner_type={cfg.runner_type!r}: the tools build their own StrictRunner (strict "
                         f"checkpoint loading); remove runner_type from the config")
    return StrictRunner.from_cfg(cfg)


def write_test_metrics(runner: Runner, metrics: dict) -> str:
    """Rewrites ``<log_dir>/<timestamp>.json`` with the test metrics from rank 0 once every rank is done.

    mmengine's LoggerHook dumps that file from every rank at the same time (with per-rank timings, so the
    writes differ in length), which can leave it corrupt in multi-process runs."""
    from mmengine.dist import barrier, is_main_process

    barrier()
    path = os.path.join(runner.log_dir, f"{runner.timestamp}.json")
    if is_main_process():
        with open(path, "w") as f:
            f.write(json.dumps(dict(metrics), default=float) + "\n")
    barrier()
    return path
