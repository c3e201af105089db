"""What train.py and test.py share: the common flags and the config prepared for this machine."""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from ..configs import load_config, resolve_config
from ..launch import LAUNCHERS, resolve_launcher, setup_device
from ..task import Task

__all__ = ["add_common_args", "parse", "prepare_config"]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="directory for logs, checkpoints and metrics "
                                           "(default ./work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, KEY=VALUE (e.g. train_dataloader.batch_size=4)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default=None,
                        help="job launcher (default: pytorch under torchrun, none otherwise)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by torch.distributed.launch (torchrun sets LOCAL_RANK instead)")


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def prepare_config(task: Task, args: argparse.Namespace) -> tuple[Config, str]:
    """The config (path or name) with ``--cfg-options`` merged, its work dir, and the launcher / device set-up;
    returns it with the config's path."""
    path = resolve_config(args.config, task.config_dir)
    cfg = load_config(path, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join("./work_dirs", path.stem)
    setup_device(cfg, resolve_launcher(args.launcher))
    return cfg, str(path)
