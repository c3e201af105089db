"""Train and evaluation loops: AMP, gradient accumulation and clipping, per-update lr, EMA, MESA."""
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


def train_one_epoch(model, criterion, loader, optimizer, lr_scheduler, scaler, device, epoch, args, *,
                    amp_dtype=None, model_ema=None, mixup_fn=None, mesa_on=False, updates_per_epoch: int,
                    rank: int = 0, world: int = 1, step_log=None, writer=None):
    """One epoch. Returns {'lr': epoch-mean lr, 'loss': global mean loss per sample}."""
    model.train()
    accum = args.accum_iter
    num_batches = len(loader)
    mesa_criterion = SoftTargetCrossEntropy()
    progress = Progress(f"Epoch: [{epoch}]", num_batches, args.print_freq, rank == 0)
    loss_sum = n_sum = lr_sum = 0.0
    n_updates = 0
    window_loss = window_n = 0.0  # loss over the current update (all micro-batches), for step_log
    optimizer.zero_grad(set_to_none=True)
    for i, (samples, targets) in enumerate(loader):
        samples = samples.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if args.channels_last:
            samples = samples.contiguous(memory_format=torch.channels_last)
        if mixup_fn is not None:
            samples, targets = mixup_fn(samples, targets)
        is_update = (i + 1) % accum == 0 or i + 1 == num_batches
        sync = model.no_sync() if (hasattr(model, "no_sync") and not is_update) else nullcontext()
        with sync:
            with autocast_context(device, amp_dtype):
                outputs = model(samples)
                loss = criterion(outputs, targets)
                if mesa_on:
                    with torch.no_grad():
                        teacher = model_ema.module(samples)
                    loss = loss + args.mesa * mesa_criterion(outputs, teacher.float().softmax(dim=-1))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at epoch {epoch}, iteration {i}; stopping")
            scaled = loss / accum
            if scaler is not None:
                scaler.scale(scaled).backward()
            else:
                scaled.backward()
        bs = samples.shape[0]
        loss_sum += loss_value * bs
        n_sum += bs
        window_loss += loss_value * bs
        window_n += bs
        if is_update:
            if scaler is not None:
                if args.clip_grad is not None:
                    scaler.unscale_(optimizer)
                    dispatch_clip_grad(model.parameters(), args.clip_grad, mode=args.clip_mode)
                scaler.step(optimizer)
                scaler.update()
            else:
                if args.clip_grad is not None:
                    dispatch_clip_grad(model.parameters(), args.clip_grad, mode=args.clip_mode)
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            num_updates = epoch * updates_per_epoch + n_updates + 1
            lr = optimizer.param_groups[0]["lr"]
            lr_sum += lr
            n_updates += 1
            if model_ema is not None:
                model_ema.update(getattr(model, "module", model), step=num_updates)  # unwrap DDP
            lr_scheduler.step_update(num_updates=num_updates)
            if step_log is not None:
                tot_loss, tot_n = all_reduce_sum([window_loss, window_n], device)
                if rank == 0:
                    step_log.write(json.dumps({"epoch": epoch, "update": num_updates, "lr": lr,
                                               "loss": tot_loss / tot_n}) + "\n")
                    step_log.flush()
            if writer is not None and rank == 0:
                writer.add_scalar("train/loss_step", loss_value, num_updates)
                writer.add_scalar("train/lr_step", lr, num_updates)
            window_loss = window_n = 0.0
        progress.step(i, bs * world, loss=loss_value, loss_avg=loss_sum / n_sum,
                      lr=optimizer.param_groups[0]["lr"])
    tot_loss, tot_n = all_reduce_sum([loss_sum, n_sum], device)
    return {"lr": lr_sum / max(n_updates, 1), "loss": tot_loss / max(tot_n, 1)}


@torch.no_grad()
def evaluate(model, loader, device, *, amp_dtype=None, num_classes: int, distributed_eval: bool,
             print_freq: int = 50, rank: int = 0, header: str = "Test:", channels_last: bool = False):
    """Loss, top-1 and top-5 (percent) over the whole loader, summed exactly over processes if distributed."""
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
