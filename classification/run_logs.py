"""The output folder's records of a training run, written by rank 0: provenance.json, args.yaml (a config
`--config` accepts back), log.txt (one JSON line per epoch, the official DeiT/PPMA format), summary.csv
(timm's update_summary), TensorBoard scalars, W&B and steps.jsonl (every update's global loss and lr)."""
from __future__ import annotations

import json
import pathlib
from collections import OrderedDict

from timm.utils import update_summary

from classification.config import ConfigError, args_to_dict, save_args_yaml
from classification.utils import provenance


class _StepLog:
    """Rank 0 writes the per-update lines; other ranks only join the all-reduce (file None)."""

    def __init__(self, f):
        self.f = f

    def write(self, text):
        if self.f:
            self.f.write(text)

    def flush(self):
        if self.f:
            self.f.flush()


class RunLogs:
    def __init__(self, args, rank: int, world: int, device, data_root, start_epoch: int):
        self.args, self.is_main = args, rank == 0
        self.out = pathlib.Path(args.output_dir)
        self.writer = None
        self._steps = None if not args.step_log else False  # False: a rank that joins but does not write
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        prov = provenance(world, device)
        prov["config"] = args_to_dict(args)
        prov["data"] = str(data_root)
        name = "provenance.json" if start_epoch == 0 else f"provenance-resume-{start_epoch}.json"
        (self.out / name).write_text(json.dumps(prov, indent=2))
        save_args_yaml(args, self.out / "args.yaml")
        if start_epoch == 0:  # a fresh run replaces the logs of an earlier one in the same output_dir
            for old in ("log.txt", "summary.csv"):
                (self.out / old).unlink(missing_ok=True)
        if args.tensorboard:
            self.writer = _tensorboard(self.out / "tb")
        if args.log_wandb:
            _init_wandb(args, self.out)
        if args.step_log:
            self._steps = open(self.out / "steps.jsonl", "a" if start_epoch else "w")

    def step_log(self):
        return _StepLog(self._steps) if self._steps is not None else None

    def epoch(self, stats: dict):
        """One epoch's stats (LOG_KEYS of main.py): log.txt, summary.csv, TensorBoard, W&B."""
        if not self.is_main:
            return
        with open(self.out / "log.txt", "a") as f:
            f.write(json.dumps(stats) + "\n")
        evals = OrderedDict()
        for prefix, name in (("test_", ""), ("test_ema_", "ema_")):
            for ours, timms in (("loss", "loss"), ("acc1", "top1"), ("acc5", "top5")):
                if prefix + ours in stats:
                    evals[name + timms] = stats[prefix + ours]
        update_summary(stats["epoch"], OrderedDict(loss=stats["train_loss"]), evals, str(self.out / "summary.csv"),
                       lr=stats["train_lr"], log_wandb=self.args.log_wandb)
        if self.writer is not None:
            for k, v in stats.items():
                if k not in ("epoch", "n_parameters"):
                    self.writer.add_scalar(k, v, stats["epoch"])

    def close(self):
        if self._steps:
            self._steps.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(path: pathlib.Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError("--tensorboard needs the `tensorboard` package (pip install tensorboard)") from err
    return SummaryWriter(str(path))


def _init_wandb(args, out: pathlib.Path):
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("--log-wandb needs the `wandb` package (pip install wandb)") from err
    wandb.init(project=args.wandb_project, config=args_to_dict(args), dir=str(out), name=out.name)
