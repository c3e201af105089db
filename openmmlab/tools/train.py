"""``<task>/train.py``: train a model from a config with mmengine's Runner, on one process or under torchrun.

    python <task>/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr (detection)]
                           [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]

CONFIG is a path or a config name (see :mod:`openmmlab.configs`). ``--resume`` without a value resumes from
the latest checkpoint of the work dir. A dataloader pointing at the embedded dataset gets it generated;
any other missing dataset stops the run with the path it expected. Checkpoints (``load_from``,
``--resume``) load strictly (:class:`openmmlab.runner.StrictRunner`); a file that is not a checkpoint or is
truncated stops the run with a message naming it.

Every run can be killed at any step and resumed exactly (:func:`openmmlab.resumable.make_resumable`); on
SIGTERM / SIGINT it writes a checkpoint at the next step boundary and :func:`main` returns 128 + the signal
number, the process's exit status (:mod:`openmmlab.preemption`), else 0.
"""
from __future__ import annotations

import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from kernels.cpu_allocator import keep_freed_memory

from ..checkpoint import CheckpointReadError
from ..datasets import check_datasets
from ..launch import process_group_scope
from ..preemption import preemption_exit_code
from ..resumable import make_resumable
from ..runner import build_runner
from ..task import Task
from .common import add_common_args, parse, prepare_config

__all__ = ["build_cfg", "main", "parse_args"]


def parse_args(task: Task, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"{task.name}/train.py", description=f"Train a {task.scope} model")
    parser.add_argument("config", help="config file or config name")
    add_common_args(parser)
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from CKPT, or without a value from the latest checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (CUDA only)")
    if task.has_auto_scale_lr:
        parser.add_argument("--auto-scale-lr", action="store_true",
                            help="scale the lr linearly with the total batch size (auto_scale_lr.base_batch_size)")
    return parse(parser, argv)


def enable_amp(cfg: Config) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); run without --amp on CPU")
    if cfg.optim_wrapper.get("type", "OptimWrapper") == "AmpOptimWrapper":
        print_log("--amp: the config already uses AmpOptimWrapper", logger="current")
        return
    cfg.optim_wrapper.type = "AmpOptimWrapper"
    cfg.optim_wrapper.setdefault("loss_scale", "dynamic")


def enable_auto_scale_lr(cfg: Config) -> None:
    if "base_batch_size" not in (cfg.get("auto_scale_lr") or {}):
        raise SystemExit("--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config")
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: str | None) -> None:
    if resume is None:
        return
    if resume != "auto" and not osp.isfile(resume):
        raise SystemExit(f"--resume: checkpoint not found: {resume}")
    cfg.resume, cfg.load_from = True, None if resume == "auto" else resume


def build_cfg(task: Task, args: argparse.Namespace) -> Config:
    cfg, _ = prepare_config(task, args)
    if args.amp:
        enable_amp(cfg)
    if getattr(args, "auto_scale_lr", False):
        enable_auto_scale_lr(cfg)
    set_resume(cfg, args.resume)
    make_resumable(cfg)
    check_datasets(cfg, ("train_dataloader",) + (("val_dataloader",) if cfg.get("val_cfg") else ()), task)
    return cfg


def main(task: Task, argv=None) -> int:
    """Trains; returns the exit status: 0 when the training finished, 128 + the signal number when SIGTERM /
    SIGINT stopped it after a checkpoint. On a machine without CUDA (mmengine then trains on the CPU) glibc keeps
    freed memory in the process (:func:`kernels.cpu_allocator.keep_freed_memory`)."""
    if not torch.cuda.is_available():
        print_log(keep_freed_memory(), logger="current")
    with process_group_scope():
        runner = build_runner(build_cfg(task, parse_args(task, argv)))
        try:
            runner.train()
        except CheckpointReadError as err:  # a bad --resume / load_from file: its name and the problem suffice
            raise SystemExit(str(err)) from None
        return preemption_exit_code(runner)
