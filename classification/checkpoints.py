"""What a training checkpoint holds, the per-epoch saves (last, best, every N, top-k history) and resuming.

Not timm's CheckpointSaver, whose files hold the argparse Namespace (not loadable with weights_only=True) and
no RNG state: ours are written atomically (tmp + fsync + replace), load with `torch.load(weights_only=True)`,
hold every process's RNG state for an exact resume, and keep the `model` / `model_ema` container keys that
the models' own loaders read.
"""
from __future__ import annotations

import os
import pathlib

from classification.config import ConfigError, args_to_dict
from classification.utils import load_checkpoint_file, save_atomic, set_rng_state

BEST_KEYS = ("model", "model_ema", "epoch", "best", "n_parameters", "args")


def training_state(args, tr, epoch: int, best: dict, hist: list, rng: list) -> dict:
    """The resumable state after `epoch`; `tr` is the trainer's Training bundle."""
    return {
        "model": tr.model.state_dict(),
        "model_ema": tr.model_ema.module.state_dict() if tr.model_ema is not None else None,
        "optimizer": tr.optimizer.state_dict(),
        "lr_scheduler": tr.scheduler.state_dict(),
        "scaler": tr.scaler.state_dict() if tr.scaler is not None else None,
        "epoch": epoch,
        "best": best,
        "checkpoint_hist": hist,
        "n_parameters": tr.n_parameters,
        "args": args_to_dict(args),
        "rng": rng,
    }


def updated_history(hist: list, epoch: int, metric: float, keep: int) -> tuple[list, list]:
    """(new history, evicted epochs): the `keep` best [metric, epoch] pairs, best first; ties keep the older."""
    ranked = sorted(hist + [[metric, epoch]], key=lambda me: (-me[0], me[1]))
    return ranked[:keep], [e for _, e in ranked[keep:]]


def save_epoch(args, out_dir: pathlib.Path, state: dict, epoch: int, is_best: bool, test_stats: dict,
               evicted: list):
    """checkpoint.pth (the last epoch, what --resume auto reads), best.pth (weights only), checkpoint-<epoch>.pth
    every save_freq epochs and for the epochs in the top-k history (a hard link to this epoch's file)."""
    last = out_dir / "checkpoint.pth"
    save_atomic(state, str(last))
    kept_by_freq = {e for e in range(epoch + 1) if args.save_freq and (e + 1) % args.save_freq == 0}
    in_hist = any(e == epoch for _, e in state["checkpoint_hist"])
    if epoch in kept_by_freq or in_hist:
        _duplicate(last, out_dir / f"checkpoint-{epoch}.pth")
    for e in evicted:
        if e not in kept_by_freq:
            (out_dir / f"checkpoint-{e}.pth").unlink(missing_ok=True)
    if is_best:
        save_atomic({k: state[k] for k in BEST_KEYS} | {"test_stats": test_stats}, str(out_dir / "best.pth"))


def _duplicate(src: pathlib.Path, dst: pathlib.Path):
    """A hard link (the next epoch's atomic replace of src gives src a new inode, the link keeps this one)."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:  # no hard links on this file system
        tmp.unlink(missing_ok=True)
        save_atomic(load_checkpoint_file(str(src)), str(dst))


def resolve_resume(args) -> str | None:
    """--resume FILE, or 'auto': <output_dir>/checkpoint.pth when it exists (else None: start fresh)."""
    if args.resume == "auto":
        path = pathlib.Path(args.output_dir) / "checkpoint.pth"
        return str(path) if path.is_file() else None
    if not os.path.isfile(args.resume):
        raise FileNotFoundError(f"--resume {args.resume}: checkpoint not found")
    return args.resume


def load_weights(path: str, model, model_ema, strict_ema: bool) -> dict:
    """Loads `model` (and the EMA) from one of our checkpoints; returns the checkpoint."""
    ckpt = load_checkpoint_file(path)
    if "model" not in ckpt or "epoch" not in ckpt:
        raise ConfigError(f"{path} is not a checkpoint of this trainer (no 'model' / 'epoch'); official weights "
                          f"load with --pretrained")
    model.load_state_dict(ckpt["model"])
    if model_ema is not None:
        if ckpt.get("model_ema") is not None:
            model_ema.module.load_state_dict(ckpt["model_ema"])
        elif strict_ema:
            raise ConfigError(f"{path} has no model_ema but this run keeps an EMA")
    return ckpt


def restore_training(args, tr, ckpt: dict, path: str, rank: int, world: int) -> tuple[int, dict, list]:
    """Optimizer, scaler, schedule and RNG from `ckpt` (only the weights with --no-resume-opt).
    Returns (start epoch, best, checkpoint history)."""
    if not args.no_resume_opt:
        tr.optimizer.load_state_dict(ckpt["optimizer"])
        tr.scheduler.load_state_dict(ckpt["lr_scheduler"])
        if tr.scaler is not None and ckpt.get("scaler") is not None:
            tr.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[rank])
        elif rank == 0:
            print(f"note: {path} has RNG states of {len(rng)} process(es), this run has {world}: reseeding instead",
                  flush=True)
    out_dir = pathlib.Path(args.output_dir)
    hist = [me for me in ckpt.get("checkpoint_hist") or [] if (out_dir / f"checkpoint-{me[1]}.pth").is_file()]
    return ckpt["epoch"] + 1, ckpt["best"], hist
