"""Train and evaluation loops: AMP, gradient accumulation and clipping, lr stepping, EMA, MESA, the non-finite
guard, mid-epoch continuation (EpochState) and a stop between updates."""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from timm.utils import dispatch_clip_grad

from .nonfinite import NonFiniteGuard, UpdateEvent
from .optimization import ema_step
from .utils import all_reduce_sum, set_rng_state


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """Autocast for `dtype` (None = fp32)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class Progress:
    """Console progress: iteration, loss, lr, ETA and throughput, printed by rank 0."""

    def __init__(self, header: str, total: int, every: int, enabled: bool):
        self.header, self.total, self.every, self.enabled = header, total, max(1, every), enabled
        self.start = time.time()
        self.images = 0

    def step(self, i: int, batch: int, **values):
        self.images += batch
        if not self.enabled or not ((i + 1) % self.every == 0 or i + 1 == self.total):
            return
        elapsed = time.time() - self.start
        eta = elapsed / (i + 1) * (self.total - i - 1)
        fields = "  ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in values.items())
        print(f"{self.header} [{i + 1:>{len(str(self.total))}}/{self.total}]  eta: "
              f"{datetime.timedelta(seconds=int(eta))}  {fields}  img/s: {self.images / max(elapsed, 1e-9):.1f}",
              flush=True)


@dataclass
class EpochState:
    """This process's progress through an epoch: what a mid-epoch checkpoint stores to continue it exactly."""

    batches: int = 0  # batches done
    updates: int = 0  # update slots done, skipped ones included (the schedule steps through them)
    skipped: int = 0  # updates skipped for a non-finite loss or gradient (or by the GradScaler)
    loss: float = 0.0  # sum of loss x samples over the updates taken
    samples: float = 0.0
    lr: float = 0.0  # sum of the lr of the updates taken


@dataclass
class EpochStart:
    """Where a resumed epoch continues: this process's EpochState and RNG state at a mid-epoch checkpoint."""

    state: EpochState
    rng: dict


@dataclass
class _Window:
    """The micro-batches of the update in progress on this process."""

    loss: float = 0.0  # sum of loss x samples
    samples: float = 0.0
    last: float = 0.0  # the last loss, or the first non-finite one
    bad: bool = False
    input_finite: bool | None = None

    def add(self, loss_value: float, samples: torch.Tensor):
        bs = samples.shape[0]
        self.loss, self.samples = self.loss + loss_value * bs, self.samples + bs
        if not self.bad:
            self.last = loss_value
        if not self.bad and not math.isfinite(loss_value):  # look at the input only then: it costs a pass
            self.bad, self.input_finite = True, bool(torch.isfinite(samples).all())


def train_one_epoch(model, criterion, loader, optimizer, stepper, scaler, device, epoch, args, *,
                    amp_dtype=None, model_ema=None, mixup_fn=None, mesa_on=False, updates_per_epoch: int,
                    rank: int = 0, world: int = 1, step_log=None, writer=None, guard: NonFiniteGuard | None = None,
                    start: EpochStart | None = None, on_update=None, stop_requested=None):
    """One epoch, or its rest from `start` (the loader's sampler already skips the batches done).
    `on_update(state, stop)` runs after every update and returns whether to stop the epoch there; `stop` is
    `stop_requested()` of any process. Returns {'lr': mean lr of the updates taken, 'loss': global mean loss
    per sample, 'skipped': updates skipped, 'stopped': whether on_update stopped it, 'state': EpochState}."""
    model.train()
    guard = guard or NonFiniteGuard(args.nonfinite, args.nonfinite_limit, rank)
    state = dataclasses.replace(start.state) if start else EpochState()
    num_batches = len(loader)
    progress = Progress(f"Epoch: [{epoch}]", num_batches, args.print_freq, rank == 0)
    window, stopped = _Window(), False
    optimizer.zero_grad(set_to_none=True)
    batches = iter(loader)
    if start is not None:
        set_rng_state(start.rng)  # after the iterator drew its base seed, as the uninterrupted epoch did then
    for i, (samples, targets) in enumerate(batches, start=state.batches):
        samples, targets = _to_device(samples, targets, device, args, mixup_fn)
        is_update = (i + 1) % args.accum_iter == 0 or i + 1 == num_batches
        loss_value = _forward_backward(model, criterion, samples, targets, scaler, args, amp_dtype, device,
                                       model_ema if mesa_on else None, sync=is_update)
        window.add(loss_value, samples)
        state.batches = i + 1
        if is_update:
            where = f"epoch {epoch}, step {i + 1}/{num_batches} (update {epoch * updates_per_epoch + state.updates + 1})"
            stop, lr = _update(model, optimizer, scaler, stepper, args, guard, model_ema, state, window, where,
                               epoch * updates_per_epoch, device, world, stop_requested)
            _log_update(step_log, writer, window, epoch, epoch * updates_per_epoch + state.updates, lr, device, rank)
            window = _Window()
            stopped = on_update(state, stop) if on_update is not None else stop
        progress.step(i, samples.shape[0] * world, loss=loss_value, loss_avg=state.loss / max(state.samples, 1),
                      lr=optimizer.param_groups[0]["lr"])
        if stopped:
            break
    tot_loss, tot_n = all_reduce_sum([state.loss, state.samples], device)
    return {"lr": state.lr / max(state.updates - state.skipped, 1), "loss": tot_loss / max(tot_n, 1),
            "skipped": state.skipped, "stopped": stopped, "state": state}


def _to_device(samples, targets, device, args, mixup_fn):
    samples = samples.to(device, non_blocking=True)  # already there with the prefetcher
    targets = targets.to(device, non_blocking=True)
    if args.channels_last:
        samples = samples.contiguous(memory_format=torch.channels_last)
    if mixup_fn is not None:
        samples, targets = mixup_fn(samples, targets)
    return samples, targets


def _update(model, optimizer, scaler, stepper, args, guard, model_ema, state: EpochState, window: _Window,
            where: str, epoch_base: int, device, world: int, stop_requested) -> tuple[bool, float]:
    """The end of an update: the processes agree on a non-finite loss and on a stop request (one collective),
    the guard's verdict, the optimizer step (or the skip), EMA, schedule and the epoch sums. Returns (the
    agreed stop request, the lr of this update)."""
    bad, stop = all_reduce_sum([float(window.bad), float(bool(stop_requested and stop_requested()))], device)
    event = UpdateEvent(where, window.last, int(bad), world, window.input_finite)
    lr = optimizer.param_groups[0]["lr"]
    taken = _optimizer_step(model, optimizer, scaler, args, guard, event)
    num_updates = epoch_base + state.updates + 1
    if taken:
        state.loss, state.samples, state.lr = state.loss + window.loss, state.samples + window.samples, state.lr + lr
        if model_ema is not None:
            model_ema.update(getattr(model, "module", model), step=ema_step(args, num_updates))  # unwrap DDP
    else:
        state.skipped += 1
    state.updates += 1
    stepper.after_update(num_updates)  # skipped updates keep their slot in the schedule
    return stop > 0, lr


def _forward_backward(model, criterion, samples, targets, scaler, args, amp_dtype, device, teacher, sync: bool):
    """Loss (+ MESA's distillation from the EMA `teacher` when given) and its backward; DDP's gradient
    all-reduce only on the micro-batch that ends an update. Returns the loss value."""
    ctx = model.no_sync() if (hasattr(model, "no_sync") and not sync) else nullcontext()
    with ctx:
        with autocast_context(device, amp_dtype):
            outputs = model(samples)
            loss = criterion(outputs, targets)
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher.module(samples).float().softmax(dim=-1)
                loss = loss + args.mesa * SoftTargetCrossEntropy()(outputs, soft)
        scaled = loss / args.accum_iter
        if scaler is not None:
            scaler.scale(scaled).backward()
        else:
            scaled.backward()
    return loss.item()


def _optimizer_step(model, optimizer, scaler, args, guard: NonFiniteGuard, event: UpdateEvent) -> bool:
    """Unscale, the guard's verdict on the loss and gradient norm, clip and step. Returns whether the weights
    were updated (a skipped update leaves weights and optimizer state as they were)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    verdict = guard.verdict(event, norm.item(), model, scaler)
    if verdict == "step" and args.clip_grad is not None:
        if args.clip_mode == "norm":  # what timm's dispatch_clip_grad does, reusing the norm
            torch.nn.utils.clip_grads_with_norm_(params, args.clip_grad, norm)
        else:
            dispatch_clip_grad(params, args.clip_grad, mode=args.clip_mode)
    if scaler is not None:
        if verdict != "skip":
            scaler.step(optimizer)  # skips by itself on an overflow
        scaler.update()  # after an overflow or a skip: a lower scale
        if verdict == "scaler":
            guard.after_scaler(event, scaler.get_scale(), model)
    elif verdict == "step":
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return verdict == "step"


def _log_update(step_log, writer, window: _Window, epoch, num_updates, lr, device, rank):
    """steps.jsonl (the global loss of the update: null when skipped) and TensorBoard."""
    if step_log is not None:
        tot_loss, tot_n = all_reduce_sum([window.loss, window.samples], device)
        loss = tot_loss / tot_n if math.isfinite(tot_loss) else None
        if rank == 0:
            step_log.write(json.dumps({"epoch": epoch, "update": num_updates, "lr": lr, "loss": loss}) + "\n")
            step_log.flush()
    if writer is not None and rank == 0:
        writer.add_scalar("train/loss_step", window.last, num_updates)
        writer.add_scalar("train/lr_step", lr, num_updates)


@torch.no_grad()
def evaluate(model, loader, device, *, amp_dtype=None, num_classes: int, distributed_eval: bool,
             print_freq: int = 50, rank: int = 0, header: str = "Test:", channels_last: bool = False,
             on_output=None):
    """Loss, top-1 and top-5 (percent) over the whole loader, summed exactly over processes if distributed.
    `on_output(logits)` sees every batch's logits in loader order (validate.py's ReaL labels)."""
    model.eval()
    k5 = min(5, num_classes)
    loss_sum = c1 = c5 = n = 0.0
    progress = Progress(header, len(loader), print_freq, rank == 0)
    for i, (images, targets) in enumerate(loader):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, amp_dtype):
            output = model(images)
        output = output.float()
        if on_output is not None:
            on_output(output)
        if bool((targets < 0).any()):  # stand-ins for unreadable images (classification/image_files.py)
            output, targets = output[targets >= 0], targets[targets >= 0]
        loss = F.cross_entropy(output, targets, reduction="sum")
        correct = output.topk(k5, dim=1).indices.eq(targets[:, None])  # exact counts, not rounded percents
        bs = targets.shape[0]
        loss_sum += loss.item()
        c1 += correct[:, 0].sum().item()
        c5 += correct.sum().item()
        n += bs
        progress.step(i, bs, acc1=100.0 * c1 / n)
    if distributed_eval:
        loss_sum, c1, c5, n = all_reduce_sum([loss_sum, c1, c5, n], device)
    stats = {"loss": loss_sum / max(n, 1), "acc1": 100.0 * c1 / max(n, 1), "acc5": 100.0 * c5 / max(n, 1)}
    if rank == 0:
        print(f"{header} * Acc@1 {stats['acc1']:.3f} Acc@5 {stats['acc5']:.3f} loss {stats['loss']:.4f} "
              f"({int(n)} images)", flush=True)
    return stats


@torch.no_grad()
def throughput(model, device, batch_size: int, input_size: int, amp_dtype=None, warmup: int = 10, iters: int = 30):
    """Images per second of an inference forward at batch_size x 3 x input_size^2."""
    model.eval()
    images = torch.randn(batch_size, 3, input_size, input_size, device=device)
    with autocast_context(device, amp_dtype):
        for _ in range(warmup):
            model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.time()
        for _ in range(iters):
            model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return batch_size * iters / (time.time() - start)
