"""Where a run continues: resuming from checkpoint.pth (an epoch boundary) or recovery.pth (mid-epoch), and
writing the mid-epoch state (every --save-every-steps updates, as timm's recovery_interval, and on a stop).

A mid-epoch state holds, besides what checkpoint.pth holds, every process's EpochState (batches and updates
done, the epoch's loss / lr sums) and RNG state at that update. The resumed epoch skips the batches done
(the sampler's order depends only on seed and epoch) and restores the RNG after the loader drew its seed,
so with num_workers 0 and no prefetcher it continues bit-exactly; with loader workers or the prefetcher
(random draws in other processes or one batch ahead) weights, optimizer and data order are exact but the
augmentation draws differ, and the run says so.
"""
from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field

from classification import checkpoints as ckpts
from classification.engine import EpochStart, EpochState
from classification.utils import gather_objects


@dataclass
class ResumePoint:
    """Where this invocation starts: epoch, best metric, checkpoint history, the mid-epoch state if any."""

    epoch: int
    best: dict
    hist: list = field(default_factory=list)
    path: str | None = None
    partial: EpochStart | None = None
    buffers: dict | None = None  # this process's model / EMA buffers (checkpoints.process_state)

    def done_updates(self, updates_per_epoch: int) -> int:
        return self.epoch * updates_per_epoch + (self.partial.state.updates if self.partial else 0)


def resume(ctx, tr) -> ResumePoint:
    """From --resume (overridden by --start-epoch); the schedule is positioned at the start."""
    args = ctx.args
    metric = "test_ema_acc1" if tr.model_ema is not None else "test_acc1"
    point = ResumePoint(0, {"metric": metric, "value": -1.0, "epoch": -1})
    path = ckpts.resolve_resume(args) if args.resume else None
    if path:
        ckpt = ckpts.load_weights(path, tr.model, tr.model_ema, strict_ema=True, model_name=args.model)
        epoch, best, hist, mine = ckpts.restore_training(args, tr, ckpt, path, ctx.rank, ctx.world)
        point = ResumePoint(epoch, best, hist, path, _epoch_start(mine),
                            ckpts.own_buffers(args, ckpt, ctx.rank, ctx.world))
        if ctx.is_main:
            print(f"resumed from {path} (epoch {ckpt['epoch']} done"
                  f"{'; weights only: --no-resume-opt' if args.no_resume_opt else ''})", flush=True)
    if args.start_epoch is not None:
        point.epoch, point.partial = args.start_epoch, None
    if not path or args.no_resume_opt or args.start_epoch is not None:
        tr.stepper.seek(point.epoch)  # a restored optimizer and schedule are already there
    return point


def _epoch_start(mine: dict | None) -> EpochStart | None:
    if not mine:
        return None
    rng = mine.pop("rng")
    return EpochStart(EpochState(**mine), rng)


def describe_start(ctx, point: ResumePoint, num_batches: int, redone: int) -> str:
    """The line that says where the run continues (the issue: a resume may restart an epoch, but says so)."""
    if point.partial is not None:
        s = point.partial.state
        text = (f"epoch {point.epoch} continues after batch {s.batches}/{num_batches} (update {s.updates} of the "
                f"epoch) from {pathlib.Path(point.path).name}")
        if ctx.args.num_workers > 0 or ctx.args.prefetcher:
            text += ("; note: with loader workers or the prefetcher the augmentation draws after this point differ "
                     "from an uninterrupted run (weights, optimizer and data order do not)")
        return text
    text = f"epoch {point.epoch} starts from its beginning"
    if redone:
        text += f": {redone} update(s) logged after the checkpoint are redone (--save-every-steps N keeps them)"
    return text


def save_mid_epoch(ctx, tr, epoch: int, state: EpochState, best: dict, hist: list):
    """recovery.pth at this update boundary (a collective: every process sends its state and RNG)."""
    every = gather_objects((ckpts.process_state(tr), dataclasses.asdict(state)))
    if ctx.is_main:
        partial = {"epoch": epoch, "states": [p[1] for p in every]}
        ckpt = ckpts.training_state(ctx.args, tr, epoch - 1, best, hist, [p[0] for p in every], partial)
        ckpts.save_recovery(pathlib.Path(ctx.args.output_dir), ckpt)
