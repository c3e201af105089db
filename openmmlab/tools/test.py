"""``<task>/test.py``: evaluate a checkpoint on a config's test set with mmengine's Runner.

    python <task>/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show] [--show-dir DIR]
                          [--wait-time S] [--tta] [--cfg-options KEY=VALUE ...] [--launcher ...]

CHECKPOINT is one of ours or a paper's official one (backbone keys in the official layout are mapped); it is
loaded strictly: a missing, unexpected or mis-shaped key stops the run naming it, and so does a file that is
not a checkpoint or is truncated. ``--tta`` evaluates with the config's ``tta_pipeline`` / ``tta_model``;
``--show-dir`` draws every test image into
``<work_dir>/<timestamp>/<DIR>``; ``--out`` saves the raw predictions (detection: a .pkl, segmentation: a
directory of label maps). The metrics are logged and written to ``<work_dir>/<timestamp>/<timestamp>.json``
once, by rank 0 (:func:`openmmlab.runner.write_test_metrics`).
"""
from __future__ import annotations

import argparse
import os.path as osp

from mmengine.config import Config

from ..checkpoint import CheckpointReadError
from ..datasets import check_datasets
from ..launch import process_group_scope
from ..runner import build_runner, write_test_metrics
from ..task import Task
from .common import add_common_args, parse, prepare_config

__all__ = ["build_cfg", "main", "parse_args"]


def parse_args(task: Task, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"{task.name}/test.py", description=f"Evaluate a {task.scope} checkpoint")
    parser.add_argument("config", help="config file or config name")
    parser.add_argument("checkpoint", help="checkpoint file")
    add_common_args(parser)
    parser.add_argument("--out", help="also save the raw predictions (detection: a .pkl file, segmentation: a "
                                      "directory of label maps)")
    parser.add_argument("--show", action="store_true", help="show the predictions in a window")
    parser.add_argument("--show-dir", help="draw every test image into <work_dir>/<timestamp>/SHOW_DIR "
                                           "(or SHOW_DIR if it is absolute)")
    parser.add_argument("--wait-time", type=float, default=2, help="seconds each shown image stays (--show)")
    parser.add_argument("--tta", *task.tta_aliases, dest="tta", action="store_true",
                        help="test-time augmentation: the config's tta_pipeline and tta_model")
    return parse(parser, argv)


def build_cfg(task: Task, args: argparse.Namespace) -> Config:
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    cfg, path = prepare_config(task, args)
    cfg.load_from, cfg.resume = args.checkpoint, False  # loaded strictly by the StrictRunner
    if args.tta:
        task.enable_tta(cfg, path)
    if args.show or args.show_dir:
        task.enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.out:
        task.dump_predictions(cfg, args.out)
    check_datasets(cfg, ("test_dataloader",), task)
    return cfg


def main(task: Task, argv=None) -> dict:
    with process_group_scope():
        runner = build_runner(build_cfg(task, parse_args(task, argv)))
        try:
            metrics = runner.test()
        except CheckpointReadError as err:  # not a checkpoint / truncated: its name and the problem suffice
            raise SystemExit(str(err)) from None
        write_test_metrics(runner, metrics)
        return metrics
