"""Train and evaluation loops: AMP, gradient accumulation and clipping, lr stepping, EMA, MESA."""
from __future__ import annotations

import datetime
import json
import math
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from timm.utils import dispatch_clip_grad

from .optimization import ema_step
from .utils import all_reduce_sum


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


def train_one_epoch(model, criterion, loader, optimizer, stepper, scaler, device, epoch, args, *,
                    amp_dtype=None, model_ema=None, mixup_fn=None, mesa_on=False, updates_per_epoch: int,
                    rank: int = 0, world: int = 1, step_log=None, writer=None):
    """One epoch. Returns {'lr': epoch-mean lr of the updates, 'loss': global mean loss per sample}."""
    model.train()
    accum, num_batches = args.accum_iter, len(loader)
    progress = Progress(f"Epoch: [{epoch}]", num_batches, args.print_freq, rank == 0)
    totals = {"loss": 0.0, "n": 0.0, "lr": 0.0, "updates": 0}
    window = [0.0, 0.0]  # loss x samples and samples of the current update (all micro-batches), for step_log
    optimizer.zero_grad(set_to_none=True)
    for i, (samples, targets) in enumerate(loader):
        samples = samples.to(device, non_blocking=True)  # already there with the prefetcher
        targets = targets.to(device, non_blocking=True)
        if args.channels_last:
            samples = samples.contiguous(memory_format=torch.channels_last)
        if mixup_fn is not None:
            samples, targets = mixup_fn(samples, targets)
        is_update = (i + 1) % accum == 0 or i + 1 == num_batches
        loss_value = _forward_backward(model, criterion, samples, targets, scaler, args, amp_dtype, device,
                                       model_ema if mesa_on else None, sync=is_update)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at epoch {epoch}, iteration {i}; stopping")
        bs = samples.shape[0]
        totals["loss"] += loss_value * bs
        totals["n"] += bs
        window = [window[0] + loss_value * bs, window[1] + bs]
        if is_update:
            num_updates = epoch * updates_per_epoch + totals["updates"] + 1
            lr = _optimizer_step(model, optimizer, scaler, args)
            totals["lr"] += lr
            totals["updates"] += 1
            if model_ema is not None:
                model_ema.update(getattr(model, "module", model), step=ema_step(args, num_updates))  # unwrap DDP
            stepper.after_update(num_updates)
            _log_update(step_log, writer, window, epoch, num_updates, lr, loss_value, device, rank)
            window = [0.0, 0.0]
        progress.step(i, bs * world, loss=loss_value, loss_avg=totals["loss"] / totals["n"],
                      lr=optimizer.param_groups[0]["lr"])
    tot_loss, tot_n = all_reduce_sum([totals["loss"], totals["n"]], device)
    return {"lr": totals["lr"] / max(totals["updates"], 1), "loss": tot_loss / max(tot_n, 1)}


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


def _optimizer_step(model, optimizer, scaler, args) -> float:
    """Clip (after unscaling) and step; returns the lr this update used."""
    if scaler is not None and args.clip_grad is not None:
        scaler.unscale_(optimizer)
    if args.clip_grad is not None:
        dispatch_clip_grad(model.parameters(), args.clip_grad, mode=args.clip_mode)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer.param_groups[0]["lr"]


def _log_update(step_log, writer, window, epoch, num_updates, lr, loss_value, device, rank):
    if step_log is not None:
        tot_loss, tot_n = all_reduce_sum(window, device)
        if rank == 0:
            step_log.write(json.dumps({"epoch": epoch, "update": num_updates, "lr": lr, "loss": tot_loss / tot_n}) + "\n")
            step_log.flush()
    if writer is not None and rank == 0:
        writer.add_scalar("train/loss_step", loss_value, num_updates)
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
        loss = F.cross_entropy(output, targets, reduction="sum")
        correct = output.topk(k5, dim=1).indices.eq(targets[:, None])  # exact counts, not rounded percents
        bs = images.shape[0]
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
