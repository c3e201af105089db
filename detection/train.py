"""Train a detector from an mmdet 3.x config (mmengine Runner), on one process or under torchrun.

    python detection/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr] [--resume [CKPT]]
                              [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
    bash detection/dist_train.sh CONFIG NUM_PROCS [same options]

The options are those of mmdet's ``tools/train.py``. The backbones of this repository come in through the
config's ``custom_imports`` (``models.openmmlab``); nothing is registered here. Under torchrun the launcher
is ``pytorch`` (chosen automatically when ``--launcher`` is not given) and the backend NCCL with CUDA, gloo
without. A config whose dataset root is an ``embedded_coco`` directory gets the embedded tiny dataset
generated on first use; any other missing dataset stops the run with the path it expected.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # `python detection/train.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from detection import runtime


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a detector (mmdet 3.x config)")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="directory for logs and checkpoints (default ./work_dirs/<config name>)")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (CUDA only)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the lr linearly with the total batch size (config auto_scale_lr.base_batch_size)")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from CHECKPOINT, or without a value from the latest checkpoint in the work dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, KEY=VALUE (e.g. train_dataloader.batch_size=4)")
    parser.add_argument("--launcher", choices=runtime.LAUNCHERS, default=None,
                        help="job launcher (default: pytorch under torchrun, none otherwise)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by torch.distributed.launch (torchrun sets LOCAL_RANK instead)")
    args = parser.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or runtime.default_work_dir(args.config)
    if args.amp:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); run without --amp on CPU")
        if cfg.optim_wrapper.get("type", "OptimWrapper") == "AmpOptimWrapper":
            print("--amp: the config already uses AmpOptimWrapper")
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.loss_scale = "dynamic"
    if args.auto_scale_lr:
        if "auto_scale_lr" not in cfg or "base_batch_size" not in cfg.auto_scale_lr:
            raise RuntimeError("--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config")
        cfg.auto_scale_lr.enable = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        runtime.check_file(args.resume, "--resume checkpoint")
        cfg.resume, cfg.load_from = True, args.resume
    runtime.setup_device(cfg, runtime.resolve_launcher(args.launcher))
    loaders = ("train_dataloader",) + (("val_dataloader",) if cfg.get("val_cfg") else ())
    runtime.prepare_datasets(cfg, loaders)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    with runtime.mmengine_checkpoint_globals():  # --resume / load_from of mmengine checkpoints
        runner.train()


if __name__ == "__main__":
    main()
