"""Evaluate a detector checkpoint on the config's test set (COCO bbox / segm metrics through mmdet).

    python detection/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                             [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
    bash detection/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [same options]

CHECKPOINT is one of our detector checkpoints (``work_dirs/<config>/epoch_12.pth``) or an official detector
checkpoint of the mmdet-based papers: the backbone keys of those are in the paper's layout
(``backbone.<official key>``) and the backbone adapter maps them while loading. The checkpoint is loaded
strictly: missing or unexpected keys stop the run with their names (mmengine's default would only warn).
The metrics are logged (``coco/bbox_mAP`` ...) and written to ``<work_dir>/<timestamp>/<timestamp>.json`` (by
rank 0 once all ranks are done: mmengine's logger hook writes that file from every rank at once).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # `python detection/test.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from detection import runtime


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate a detector checkpoint (mmdet 3.x config)")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="detector checkpoint file")
    parser.add_argument("--work-dir", help="directory for the evaluation logs (default ./work_dirs/<config name>)")
    parser.add_argument("--out", help="also dump the raw predictions to this .pkl file")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, KEY=VALUE (e.g. test_dataloader.dataset.data_root=...)")
    parser.add_argument("--launcher", choices=runtime.LAUNCHERS, default=None,
                        help="job launcher (default: pytorch under torchrun, none otherwise)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by torch.distributed.launch (torchrun sets LOCAL_RANK instead)")
    args = parser.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_cfg(args) -> Config:
    runtime.check_file(args.checkpoint, "checkpoint")
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or runtime.default_work_dir(args.config)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.out is not None:
        if not args.out.endswith((".pkl", ".pickle")):
            raise ValueError(f"--out must be a .pkl file, got {args.out}")
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
        cfg.test_evaluator = [*evaluators, dict(type="DumpDetResults", out_file_path=args.out)]
    runtime.setup_device(cfg, runtime.resolve_launcher(args.launcher))
    runtime.prepare_datasets(cfg, ("test_dataloader",))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    with runtime.mmengine_checkpoint_globals():
        runner.load_checkpoint(args.checkpoint, strict=True)  # strict: a partial load must not go unnoticed
        metrics = runner.test()
    runtime.write_test_metrics(runner, metrics)
    return metrics


if __name__ == "__main__":
    main()
