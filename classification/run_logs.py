"""The output folder's records of a training run, written by rank 0: provenance.json, args.yaml (a config
`--config` accepts back), log.txt (one JSON line per epoch, the official DeiT/PPMA format), summary.csv
(timm's update_summary), TensorBoard scalars, W&B and steps.jsonl (every update's global loss and lr); on a
resume, the files are cut back to the checkpoint the run continues from."""
from __future__ import annotations

import json
import os
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
    """`continuing`: this invocation resumes (or starts at --start-epoch) after `done_updates` updates of
    epochs before `start_epoch`; the logs are cut back to that point, since a killed run may have logged
    beyond its last checkpoint (`redone_updates` counts the steps.jsonl lines cut). Otherwise a fresh run
    replaces the logs of an earlier one in the same output_dir."""

    def __init__(self, args, rank: int, world: int, device, data_root, start_epoch: int, done_updates: int = 0,
                 continuing: bool = False):
        self.args, self.is_main = args, rank == 0
        self.out = pathlib.Path(args.output_dir)
        self.writer = None
        self.redone_updates = 0
        self._steps = None if not args.step_log else False  # False: a rank that joins but does not write
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        prov = provenance(world, device)
        prov["config"] = args_to_dict(args)
        prov["data"] = str(data_root)
        _new_name(self.out, f"provenance-resume-{start_epoch}" if continuing else "provenance").write_text(
            json.dumps(prov, indent=2))
        save_args_yaml(args, self.out / "args.yaml")
        if continuing:
            self.redone_updates = cut_logs(self.out, start_epoch, done_updates)
        else:
            for old in ("log.txt", "summary.csv"):
                (self.out / old).unlink(missing_ok=True)
        if args.tensorboard:
            self.writer = _tensorboard(self.out / "tb")
        if args.log_wandb:
            _init_wandb(args, self.out)
        if args.step_log:
            self._steps = open(self.out / "steps.jsonl", "a" if continuing else "w")

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


def _new_name(out: pathlib.Path, stem: str) -> pathlib.Path:
    """<stem>.json, or <stem>-2.json, ... when taken (a second resume at the same epoch keeps the first's)."""
    path, k = out / f"{stem}.json", 1
    while stem != "provenance" and path.exists():
        k += 1
        path = out / f"{stem}-{k}.json"
    return path


def cut_logs(out: pathlib.Path, start_epoch: int, done_updates: int) -> int:
    """Cuts log.txt and summary.csv back to the epochs before `start_epoch` and steps.jsonl to the first
    `done_updates` updates (each file replaced atomically). Returns the number of steps.jsonl lines cut."""
    _rewrite(out / "log.txt", lambda line: json.loads(line)["epoch"] < start_epoch)
    _rewrite(out / "summary.csv", lambda line: line.startswith("epoch,") or int(line.split(",", 1)[0]) < start_epoch)
    return _rewrite(out / "steps.jsonl", lambda line: json.loads(line)["update"] <= done_updates)


def _rewrite(path: pathlib.Path, keep) -> int:
    """Keeps the lines for which keep(line) holds (a torn last line is dropped); returns how many were cut."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if line.endswith("\n") and keep(line):
                kept.append(line)
        except (ValueError, KeyError):  # a line torn by a kill
            pass
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    return len(lines) - len(kept)


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
