"""What a training checkpoint holds, the per-epoch saves (last, best, every N, top-k history), the mid-epoch
recovery checkpoint and resuming.

Not timm's CheckpointSaver, whose files hold the argparse Namespace (not loadable with weights_only=True) and
no RNG state: ours are written atomically (tmp + fsync + replace), load with `torch.load(weights_only=True)`,
hold every process's RNG state for an exact resume, and keep the `model` / `model_ema` container keys that
the models' own loaders read. Like timm's `recovery_interval`, `recovery.pth` holds a mid-epoch state (every
`save_every_steps` updates, and on SIGTERM / SIGINT); `--resume auto` takes whichever of it and
checkpoint.pth is further along.
"""
from __future__ import annotations

import os
import pathlib

import torch

from classification.config import args_to_dict
from classification.nonfinite import NonFiniteError, all_finite
from classification.utils import CheckpointError, get_rng_state, load_checkpoint_file, save_atomic, set_rng_state

BEST_KEYS = ("model", "model_ema", "epoch", "best", "n_parameters", "args")
LAST, RECOVERY = "checkpoint.pth", "recovery.pth"


def process_state(tr) -> dict:
    """What differs between processes and must be restored per process: the RNG states and the float buffers
    (BatchNorm statistics) of the model and the EMA. Under DDP each process updates its BatchNorm statistics
    with its own batch after rank 0's are broadcast, so the EMA (which averages buffers too) and the model
    evaluated between epochs differ per process; a resume that gave every process rank 0's would shift the
    distributed evaluation."""
    buffers = {"model": _float_buffers(tr.model)}
    if tr.model_ema is not None:
        buffers["model_ema"] = _float_buffers(tr.model_ema.module)
    return {"rng": get_rng_state(), "buffers": buffers}


def _float_buffers(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.named_buffers() if v.is_floating_point()}


def restore_buffers(tr, buffers: dict, path: str):
    """Puts back this process's buffers: after the DDP wrap, which broadcasts rank 0's."""
    for key, module in (("model", tr.model), ("model_ema", tr.model_ema.module if tr.model_ema else None)):
        own = dict(module.named_buffers()) if module is not None else {}
        saved = buffers.get(key) if module is not None else None
        if saved is None:
            continue
        if set(saved) != {k for k, v in own.items() if v.is_floating_point()}:
            raise CheckpointError(f"{path}: the per-process {key} buffers do not match this model's")
        for name, value in saved.items():
            own[name].copy_(value)


def training_state(args, tr, epoch: int, best: dict, hist: list, procs: list, partial: dict | None = None) -> dict:
    """The resumable state after `epoch`; `tr` is the trainer's Training bundle, `procs` every process's
    process_state(). `partial` (recovery.pth): {'epoch': the epoch in progress, 'states': every process's
    EpochState as a dict}."""
    state = {
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
        "rng": [p["rng"] for p in procs],
        "process_buffers": [p["buffers"] for p in procs],
    }
    if partial is not None:
        state["partial_epoch"] = partial
    return state


def updated_history(hist: list, epoch: int, metric: float, keep: int) -> tuple[list, list]:
    """(new history, evicted epochs): the `keep` best [metric, epoch] pairs, best first; ties keep the older."""
    ranked = sorted(hist + [[metric, epoch]], key=lambda me: (-me[0], me[1]))
    return ranked[:keep], [e for _, e in ranked[keep:]]


def check_finite(state: dict, path: pathlib.Path):
    """Refuses to write non-finite weights over a good checkpoint."""
    for key in ("model", "model_ema"):
        if state.get(key) is not None and not all_finite(state[key].values()):
            raise NonFiniteError(f"the {key} weights after epoch {state['epoch']} hold NaN/Inf: not saved; "
                                 f"{path} keeps the last good state")


def save_epoch(args, out_dir: pathlib.Path, state: dict, epoch: int, is_best: bool, test_stats: dict,
               evicted: list):
    """best.pth (weights only), checkpoint-<epoch>.pth every save_freq epochs and for the epochs in the top-k
    history, checkpoint.pth (the last epoch, a hard link to the kept file), then evictions and the now older
    recovery.pth. In this order a kill at any point leaves checkpoint.pth naming only files that exist; the
    resumed run rewrites the rest."""
    last = out_dir / LAST
    check_finite(state, last)
    if is_best:
        save_atomic({k: state[k] for k in BEST_KEYS} | {"test_stats": test_stats}, str(out_dir / "best.pth"))
    kept_by_freq = {e for e in range(epoch + 1) if args.save_freq and (e + 1) % args.save_freq == 0}
    if epoch in kept_by_freq or any(e == epoch for _, e in state["checkpoint_hist"]):
        kept = out_dir / f"checkpoint-{epoch}.pth"
        save_atomic(state, str(kept))
        _duplicate(kept, last)
    else:
        save_atomic(state, str(last))
    for e in evicted:
        if e not in kept_by_freq:
            (out_dir / f"checkpoint-{e}.pth").unlink(missing_ok=True)
    (out_dir / RECOVERY).unlink(missing_ok=True)


def save_recovery(out_dir: pathlib.Path, state: dict):
    check_finite(state, out_dir / RECOVERY)
    save_atomic(state, str(out_dir / RECOVERY))


def _duplicate(src: pathlib.Path, dst: pathlib.Path):
    """A hard link (the next epoch's atomic replace of dst gives dst a new inode, src keeps this one)."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:  # no hard links on this file system
        tmp.unlink(missing_ok=True)
        save_atomic(load_checkpoint_file(str(src)), str(dst))


# ---------------------------------------------------------------------------------------------- resuming
def position(path: pathlib.Path) -> tuple[int, int]:
    """(epoch in progress, updates done in it) of a checkpoint, read lazily (mmap: no tensor is loaded)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        ckpt = load_checkpoint_file(str(path))  # raises CheckpointError naming the file and the problem
    partial = ckpt.get("partial_epoch")
    if partial:
        return partial["epoch"], partial["states"][0]["updates"]
    return ckpt.get("epoch", -1) + 1, 0  # no epoch: not ours, which load_weights reports


def resolve_resume(args) -> str | None:
    """--resume FILE, or 'auto': the further along of <output_dir>/recovery.pth and checkpoint.pth (None when
    neither exists: start fresh)."""
    if args.resume != "auto":
        if not os.path.isfile(args.resume):
            raise FileNotFoundError(f"--resume {args.resume}: checkpoint not found")
        return args.resume
    out = pathlib.Path(args.output_dir)
    found = [p for p in (out / LAST, out / RECOVERY) if p.is_file()]
    if len(found) < 2:
        return str(found[0]) if found else None
    return str(max(found, key=position))  # ties: checkpoint.pth


def load_weights(path: str, model, model_ema, strict_ema: bool, model_name: str | None = None) -> dict:
    """Loads `model` (and the EMA) from one of our checkpoints; returns the checkpoint. A file of another
    trainer, another model or another number of classes is a CheckpointError naming the file and the cause."""
    ckpt = load_checkpoint_file(path)
    if "model" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer (no 'model' / 'epoch'); official "
                              f"weights load with --pretrained")
    saved = (ckpt.get("args") or {}).get("model")
    if model_name and saved and saved != model_name:
        raise CheckpointError(f"{path} is a checkpoint of {saved}, this run builds {model_name}")
    _load_checked(model, ckpt["model"], path, "model")
    if model_ema is not None:
        if ckpt.get("model_ema") is not None:
            _load_checked(model_ema.module, ckpt["model_ema"], path, "model_ema")
        elif strict_ema:
            raise CheckpointError(f"{path} has no model_ema but this run keeps an EMA")
    return ckpt


def _load_checked(model, state: dict, path: str, key: str):
    """A strict load whose mismatches are named: missing / unexpected keys, shapes, and the class count."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)}
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    problems = [f"{len(missing)} missing key(s) {missing[:5]}" if missing else "",
                f"{len(unexpected)} unexpected key(s) {unexpected[:5]}" if unexpected else "",
                "shapes " + "; ".join(f"{k} {a} vs {b} here" for k, (a, b) in list(shapes.items())[:5]) if shapes else ""]
    head = _classes_hint(model, shapes)
    raise CheckpointError(f"{path} ({key}) does not fit this model{head}: " + ", ".join(p for p in problems if p))


def _classes_hint(model, shapes: dict) -> str:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    for name in (names,) if isinstance(names, str) else names:
        if f"{name}.weight" in shapes:
            theirs, ours = shapes[f"{name}.weight"][0][0], shapes[f"{name}.weight"][1][0]
            return f" (its classifier has {theirs} classes, this run {ours}: another dataset or --num-classes)"
    return ""


def restore_training(args, tr, ckpt: dict, path: str, rank: int, world: int) -> tuple[int, dict, list, dict | None]:
    """Optimizer, scaler, schedule and RNG from `ckpt` (only the weights with --no-resume-opt).
    Returns (start epoch, best, checkpoint history, this process's mid-epoch state or None)."""
    partial = ckpt.get("partial_epoch") if not args.no_resume_opt else None
    if not args.no_resume_opt:
        tr.optimizer.load_state_dict(ckpt["optimizer"])
        tr.scheduler.load_state_dict(ckpt["lr_scheduler"])
        if tr.scaler is not None and ckpt.get("scaler") is not None:
            tr.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[rank])
        elif partial:
            raise CheckpointError(f"{path} stopped mid-epoch with {len(rng)} process(es); this run has {world}. "
                                  f"Continue it with {len(rng)}, or resume from checkpoint.pth")
        elif rank == 0:
            print(f"note: {path} has RNG states of {len(rng)} process(es), this run has {world}: reseeding instead",
                  flush=True)
    if partial:
        _check_same_batches(args, ckpt, path)
    out_dir = pathlib.Path(args.output_dir)
    hist = [me for me in ckpt.get("checkpoint_hist") or [] if (out_dir / f"checkpoint-{me[1]}.pth").is_file()]
    mine = dict(partial["states"][rank], rng=ckpt["rng"][rank]) if partial else None
    return ckpt["epoch"] + 1, ckpt["best"], hist, mine


def own_buffers(args, ckpt: dict, rank: int, world: int) -> dict | None:
    """This process's saved buffers (process_state), when the checkpoint has them for this many processes."""
    procs = ckpt.get("process_buffers") or []
    return procs[rank] if len(procs) == world and not args.no_resume_opt else None


def _check_same_batches(args, ckpt: dict, path: str):
    """A mid-epoch state continues at a batch index: the batches must be the ones it counted."""
    if args.use_multi_epochs_loader:
        raise CheckpointError(f"{path} continues an epoch after the batches it did, which timm's "
                              f"MultiEpochsDataLoader cannot skip: resume without use_multi_epochs_loader")
    saved = ckpt.get("args") or {}
    for key in ("batch_size", "accum_iter", "seed", "aug_repeats", "repeated_aug"):
        if key in saved and saved[key] != getattr(args, key):
            raise CheckpointError(f"{path} stopped mid-epoch with {key} {saved[key]}, this run has "
                                  f"{getattr(args, key)}: the epoch cannot continue where it stopped")
