"""Train or evaluate a `models` backbone on ImageNet-style data with timm's building blocks.

    torchrun --nproc_per_node=8 classification/main.py --config configs/classification/p2t_tiny.yaml --data-path /imagenet
    torchrun --nproc_per_node=2 classification/main.py --config configs/classification/p2t_tiny.yaml   # embedded data, CPU
    python classification/main.py --config ... --eval --pretrained p2t_tiny.pth --data-path /imagenet

See classification/README.md. Options: `python classification/main.py --help`.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # `python classification/main.py` puts this folder first on sys.path, where `utils`/`engine` would shadow
    # same-named top-level modules; the package is imported as `classification.*` instead.
    sys.path.pop(0)

import timm
import torch
import torch.nn as nn
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import random_seed

import models  # noqa: F401  (registers every backbone with timm)
from kernels.cpu_allocator import keep_freed_memory
from classification import checkpoints as ckpts
from classification import data as cls_data
from classification.config import ConfigError, parse_args
from classification.engine import evaluate, throughput, train_one_epoch
from classification.image_files import BadImageError
from classification.nonfinite import NonFiniteError, NonFiniteGuard
from classification.optimization import (Stepper, build_ema, build_optimizer, build_scheduler, ema_decay,
                                         scaled_lrs)
from classification.output_lock import OutputDirBusy, OutputLock
from classification.recovery import ResumePoint, describe_start, resume, save_mid_epoch
from classification.run_logs import RunLogs
from classification.stopping import StopSignals, agreed
from classification.utils import (CheckpointError, barrier, check_readable, cleanup_distributed, gather_objects,
                                  init_distributed)

# what a user did or met (a config, a file, the data, a diverging run): one line, no traceback
USER_ERRORS = (ConfigError, FileNotFoundError, CheckpointError, models.CheckpointMismatchError, cls_data.DataError,
               BadImageError, NonFiniteError, OutputDirBusy)

LOG_KEYS = ("epoch", "n_parameters", "train_lr", "train_loss", "test_loss", "test_acc1", "test_acc5",
            "test_ema_loss", "test_ema_acc1", "test_ema_acc5")
SKIPPED_KEY = "train_skipped_updates"  # logged after the others, only in an epoch with skipped updates


@dataclass
class Context:
    """This process: the resolved options, its device and its place in the process group."""

    args: object
    device: torch.device
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Training:
    """Everything a training run steps and saves."""

    model: nn.Module
    train_model: nn.Module
    model_ema: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    stepper: Stepper
    scaler: object
    amp_dtype: object
    criterion: nn.Module
    mixup_fn: object
    loaders: dict
    num_classes: int
    n_parameters: int
    updates_per_epoch: int
    num_epochs: int
    guard: NonFiniteGuard


# ---------------------------------------------------------------------------------------------- entry
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device, rank, world, _ = init_distributed(args.device, args.dist_backend, args.dist_url)
    try:
        return run(Context(args, device, rank, world))
    finally:
        cleanup_distributed()


def run(ctx: Context) -> dict:
    args = ctx.args
    if ctx.is_main:
        print(f"model {args.model}, device {ctx.device}, {ctx.world} process(es), config {args.config}", flush=True)
        if args.preset_applied:
            print("embedded-run preset (no data_path; explicit flags win): " + json.dumps(args.preset_applied),
                  flush=True)
    random_seed(args.seed, 0)  # the same initial weights on every process
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if ctx.device.type == "cpu" and args.cpu_keep_freed_memory:
        message = keep_freed_memory()
        if ctx.is_main:
            print(message, flush=True)
    if args.throughput:
        return run_throughput(ctx)
    if args.eval:
        _, _, model, loaders, _, num_classes = build_data_and_model(ctx)
        return run_eval(ctx, model, loaders["val"], num_classes)
    lock = hold_output_dir(ctx)
    try:
        with StopSignals(ctx.rank) as signals:
            return run_training(ctx, signals)
    finally:
        lock.release()


def hold_output_dir(ctx: Context) -> OutputLock:
    """Rank 0 locks the output folder; every process learns whether that failed (no process starts training)."""
    lock, error = OutputLock(ctx.args.output_dir), None
    if ctx.is_main:
        try:
            lock.acquire()
        except OutputDirBusy as err:
            error = err
    if agreed(error is not None, ctx.device):
        raise error or OutputDirBusy(f"output folder {ctx.args.output_dir} is in use by another run (see rank 0)")
    return lock


def build_data_and_model(ctx: Context):
    """(data root, train set, model, {'train', 'val'} loaders, mixup_fn, num_classes)."""
    args = ctx.args
    root = cls_data.dataset_root(args, ctx.rank, need_train=not args.eval)
    train_set, val_set = cls_data.build_datasets(args, root, need_train=not args.eval)
    num_classes = cls_data.num_classes_of(args, val_set)
    model = prepare_model(ctx, build_model(args, num_classes))
    cfg = cls_data.data_config(args, model)
    cls_data.set_transforms(args, cfg, train_set, val_set)
    random_seed(args.seed, ctx.rank)  # data order is from the sampler's seed; augmentation differs per process
    loaders, mixup_fn = cls_data.build_loaders(args, cfg, train_set, val_set, ctx.rank, ctx.world, ctx.device,
                                               num_classes)
    if ctx.is_main and not args.eval:
        print(f"{len(train_set)} train / {len(val_set)} val images, {num_classes} classes; data config "
              f"{json.dumps({k: cfg[k] for k in ('mean', 'std', 'crop_pct', 'interpolation')})}", flush=True)
    return root, train_set, model, loaders, mixup_fn, num_classes


def run_training(ctx: Context, signals: StopSignals) -> dict:
    root, _, model, loaders, mixup_fn, num_classes = build_data_and_model(ctx)
    tr = build_training(ctx, model, loaders, mixup_fn, num_classes)
    point = resume(ctx, tr)
    tr.train_model = wrap_for_training(ctx, tr.model)
    if point.buffers is not None:
        ckpts.restore_buffers(tr, point.buffers, point.path)
    return train_loop(ctx, tr, root, point, signals)


def run_throughput(ctx: Context) -> dict:
    args = ctx.args
    model = build_model(args, None).to(ctx.device)
    amp_dtype, _ = amp_setup(args, ctx.device, ctx.rank)
    ips = throughput(model, ctx.device, args.batch_size, args.input_size, amp_dtype)
    if ctx.is_main:
        print(json.dumps({"model": args.model, "batch_size": args.batch_size, "input_size": args.input_size,
                          "throughput_img_s": ips}), flush=True)
    return {"throughput": ips}


# ---------------------------------------------------------------------------------------------- model
def build_model(args, num_classes: int | None) -> nn.Module:
    kwargs = dict(args.model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    kwargs["drop_rate"] = args.drop
    if args.drop_path is not None:
        kwargs["drop_path_rate"] = args.drop_path
    if args.pretrained:
        check_readable(args.pretrained, "--pretrained")
        overlay = dict(file=os.path.abspath(args.pretrained))
        if args.checkpoint_key:
            overlay["checkpoint_key"] = args.checkpoint_key
        if args.eval and num_classes is not None:
            # evaluating: the checkpoint's classifier must fit this dataset (a mismatch is an error); when
            # fine-tuning, timm's rule applies: a head for another number of classes is left out
            overlay["num_classes"] = num_classes
        kwargs.update(pretrained=True, pretrained_cfg_overlay=overlay)
    if args.model not in timm.list_models():
        import difflib

        near = difflib.get_close_matches(args.model, models.list_models(), n=3)
        raise ConfigError(f"unknown model {args.model!r}; close registered names: {near}")
    return timm.create_model(args.model, **kwargs)


def prepare_model(ctx: Context, model: nn.Module) -> nn.Module:
    """SyncBatchNorm, device, memory format and activation checkpointing."""
    args = ctx.args
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if args.sync_bn and has_bn and ctx.world > 1:
        if ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif ctx.is_main:
            print("note: SyncBatchNorm needs CUDA; using BatchNorm (statistics per process, buffers "
                  "broadcast from rank 0 by DDP)", flush=True)
    if args.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ConfigError(f"--grad-checkpointing: {args.model} has no set_grad_checkpointing()")
        model.set_grad_checkpointing(args.grad_checkpointing)
    model.to(ctx.device)
    check_input_size(args, model, ctx.device)
    if args.channels_last:
        models.to_channels_last(model)
    return model


@torch.no_grad()
def check_input_size(args, model: nn.Module, device):
    """One eval forward of a black 3-channel input_size image (what the data gives): an input the model cannot
    take (too small, a model built for other channels) is a ConfigError now, not a traceback at the first
    batch. No RNG is drawn (eval mode) and no BatchNorm statistic changes."""
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, args.input_size, args.input_size, device=device))
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"--input-size {args.input_size}: {args.model}"
                          f"{' with --model-kwargs ' + str(args.model_kwargs) if args.model_kwargs else ''} cannot "
                          f"take a 3-channel {args.input_size}x{args.input_size} image: {err}") from err
    finally:
        model.train(was_training)


def wrap_for_training(ctx: Context, model: nn.Module) -> nn.Module:
    """DDP, then torch.compile (as timm's train.py: dynamo splits the graph at DDP's buckets). Checkpoints and
    evaluation keep using the plain `model`."""
    args = ctx.args
    train_model = model
    if ctx.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=args.find_unused_parameters)
    if args.torchcompile:
        train_model = torch.compile(train_model, backend=args.torchcompile)
    return train_model


def amp_setup(args, device, rank):
    """(autocast dtype or None, GradScaler or None). CPU: bf16 autocast only when asked, never fp16."""
    if not args.amp:
        return None, None
    dtype = torch.bfloat16 if args.amp_dtype == "bfloat16" else torch.float16
    if device.type == "cpu" and dtype == torch.float16:
        if rank == 0:
            print("note: fp16 AMP is CUDA-only; training in fp32 on CPU (pass --amp-dtype bfloat16 for bf16 "
                  "autocast on CPU)", flush=True)
        return None, None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return dtype, scaler


# ---------------------------------------------------------------------------------------------- optimisation
def build_training(ctx: Context, model, loaders, mixup_fn, num_classes) -> Training:
    """Optimizer, schedule, EMA, loss and AMP of a training run."""
    args = ctx.args
    global_batch = args.batch_size * ctx.world * args.accum_iter
    lrs = scaled_lrs(args, global_batch)
    optimizer = build_optimizer(args, model, lrs["lr"])
    updates_per_epoch = math.ceil(len(loaders["train"]) / args.accum_iter)
    scheduler, num_epochs = build_scheduler(args, optimizer, updates_per_epoch, lrs)
    model_ema = build_ema(args, model, global_batch) if args.model_ema else None
    if model_ema is not None and args.mesa and args.model_ema_force_cpu and ctx.device.type != "cpu":
        raise ConfigError("mesa needs the EMA teacher on the training device: drop model_ema_force_cpu")
    amp_dtype, scaler = amp_setup(args, ctx.device, ctx.rank)
    if mixup_fn is not None or (args.prefetcher and cls_data.mixup_args(args, num_classes)):
        criterion = SoftTargetCrossEntropy()
    elif args.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if ctx.is_main:
        print(f"params {n_parameters:,}; global batch {global_batch} = {args.batch_size} x {ctx.world} "
              f"process(es) x {args.accum_iter} accumulation; lr {lrs['lr']:.4g} (warmup {lrs['warmup_lr']:.4g}, "
              f"min {lrs['min_lr']:.4g}); {updates_per_epoch} updates/epoch; {num_epochs} epochs, schedule "
              f"stepped per {'update' if args.sched_on_updates else 'epoch'}{' with lag' if args.sched_lag else ''}"
              + (f"; EMA decay {ema_decay(args, global_batch):.8f}" if model_ema is not None else ""), flush=True)
    return Training(model, model, model_ema, optimizer, scheduler, Stepper(scheduler, args, updates_per_epoch),
                    scaler, amp_dtype, criterion, mixup_fn, loaders, num_classes, n_parameters, updates_per_epoch,
                    num_epochs, NonFiniteGuard(args.nonfinite, args.nonfinite_limit, ctx.rank))


# ---------------------------------------------------------------------------------------------- loop
def train_loop(ctx: Context, tr: Training, root, point: ResumePoint, signals: StopSignals) -> dict:
    """The epochs from `point`; stops early, with a checkpoint, when a stop signal arrives."""
    args = ctx.args
    end_epoch = tr.num_epochs
    if args.max_epochs_this_run is not None:
        end_epoch = min(end_epoch, point.epoch + args.max_epochs_this_run)
    logs = RunLogs(args, ctx.rank, ctx.world, ctx.device, root, point.epoch, point.done_updates(tr.updates_per_epoch),
                   continuing=point.path is not None or point.epoch > 0)
    if ctx.is_main and point.path:
        print(describe_start(ctx, point, len(tr.loaders["train"]), logs.redone_updates), flush=True)
    start, log_stats, best, hist, stopped = time.time(), {}, point.best, point.hist, None
    try:
        for epoch in range(point.epoch, end_epoch):
            train_stats = train_epoch(ctx, tr, logs, epoch, point.partial if epoch == point.epoch else None,
                                      best, hist, signals)
            if train_stats["stopped"]:
                stopped = (epoch, train_stats["state"])
                break
            log_stats, best, hist = finish_epoch(ctx, tr, logs, epoch, train_stats, best, hist, start)
            if agreed(signals.requested(), ctx.device):
                stopped = (epoch + 1, None)
                break
    finally:
        logs.close()
    if ctx.is_main:
        print(end_message(ctx, tr, signals, stopped, best, time.time() - start), flush=True)
    return {"last": log_stats, "best": best, "stopped": stopped is not None}


def train_epoch(ctx: Context, tr: Training, logs: RunLogs, epoch: int, partial, best: dict, hist: list,
                signals: StopSignals) -> dict:
    """One epoch's training (or its rest after a mid-epoch resume), with the recovery points in it."""
    args = ctx.args
    sampler = getattr(tr.loaders["train"], "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if partial is not None:
        sampler.skip_next(partial.state.batches * args.batch_size)
    num_batches = len(tr.loaders["train"])

    def on_update(state, stop: bool) -> bool:
        updates = epoch * tr.updates_per_epoch + state.updates
        periodic = args.save_every_steps and updates % args.save_every_steps == 0 and state.batches < num_batches
        if (stop or periodic) and not args.use_multi_epochs_loader:  # that loader cannot skip batches
            save_mid_epoch(ctx, tr, epoch, state, best, hist)
        return stop

    mesa_start = int(args.mesa_start_ratio * tr.num_epochs)
    return train_one_epoch(
        tr.train_model, tr.criterion, tr.loaders["train"], tr.optimizer, tr.stepper, tr.scaler, ctx.device,
        epoch, args, amp_dtype=tr.amp_dtype, model_ema=tr.model_ema, mixup_fn=tr.mixup_fn,
        mesa_on=args.mesa > 0 and epoch >= mesa_start, updates_per_epoch=tr.updates_per_epoch, rank=ctx.rank,
        world=ctx.world, step_log=logs.step_log(), writer=logs.writer, guard=tr.guard, start=partial,
        on_update=on_update, stop_requested=signals.requested)


def finish_epoch(ctx: Context, tr: Training, logs: RunLogs, epoch: int, train_stats: dict, best: dict, hist: list,
                 start: float):
    """Evaluation, the schedule's epoch step, saves and logs after an epoch. Returns (log stats, best, hist)."""
    test_stats = evaluate_all(ctx, tr.model, tr.model_ema, tr.loaders["val"], tr.num_classes, tr.amp_dtype)
    report_unreadable(ctx, tr.loaders)
    log_stats = {"epoch": epoch, "n_parameters": tr.n_parameters, "train_lr": train_stats["lr"],
                 "train_loss": train_stats["loss"], **test_stats}
    if train_stats["skipped"]:
        log_stats[SKIPPED_KEY] = train_stats["skipped"]
    tr.stepper.after_epoch(epoch, log_stats[best["metric"]])  # before the save: it holds the next lr
    best, hist = end_of_epoch(ctx, tr, logs, log_stats, best, hist)
    if ctx.is_main:
        print(f"epoch {epoch}: {best['metric']} {log_stats[best['metric']]:.2f} (best {best['value']:.2f} "
              f"at epoch {best['epoch']}); {time.time() - start:.0f}s elapsed", flush=True)
    barrier()
    return log_stats, best, hist


def end_message(ctx: Context, tr: Training, signals: StopSignals, stopped, best: dict, seconds: float) -> str:
    args = ctx.args
    done = (f"training time {seconds:.0f}s; best {best['metric']} {best['value']:.2f} (epoch {best['epoch']}); "
            f"output in {args.output_dir}")
    if stopped is None:
        return done
    epoch, state = stopped
    if state is None:
        where = f"after epoch {epoch - 1}: checkpoint.pth holds it"
    elif args.use_multi_epochs_loader:
        where = (f"in epoch {epoch}, whose progress is not saved (the multi-epoch loader cannot skip batches): "
                 f"it restarts from checkpoint.pth")
    else:
        where = f"in epoch {epoch} after update {state.updates}/{tr.updates_per_epoch}: recovery.pth holds it"
    return f"stopped by {signals.received} {where}; continue with --resume auto. {done}"


def end_of_epoch(ctx: Context, tr: Training, logs: RunLogs, log_stats: dict, best: dict, hist: list):
    """Best metric, checkpoint history, the logs and the saves of one epoch. Returns (best, history). The log
    line goes first: a kill during the saves leaves the log ahead of checkpoint.pth, never behind, and the
    resume cuts it back."""
    args, epoch = ctx.args, log_stats["epoch"]
    value = log_stats[best["metric"]]
    is_best = value > best["value"]
    if is_best:
        best = {"metric": best["metric"], "value": value, "epoch": epoch}
    evicted = []
    if args.checkpoint_hist:
        hist, evicted = ckpts.updated_history(hist, epoch, value, args.checkpoint_hist)
    procs = gather_objects(ckpts.process_state(tr))  # a collective: every process takes part
    if ctx.is_main:
        logs.epoch({k: log_stats[k] for k in (*LOG_KEYS, SKIPPED_KEY) if k in log_stats})
        state = ckpts.training_state(args, tr, epoch, best, hist, procs)
        test_stats = {k: v for k, v in log_stats.items() if k.startswith("test_")}
        ckpts.save_epoch(args, pathlib.Path(args.output_dir), state, epoch, is_best, test_stats, evicted)
    return best, hist


def report_unreadable(ctx: Context, loaders: dict):
    """The count of unreadable image files skipped so far (collectives: every process takes part)."""
    for split, loader in loaders.items():
        names = loader.dataset.unreadable(ctx.device)
        if names and ctx.is_main:
            print(f"warning: {len(names)} unreadable image file(s) skipped in the {split} split so far: "
                  f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}", flush=True)


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_all(ctx: Context, model, model_ema, loader, num_classes: int, amp_dtype) -> dict:
    """test_* of the model and test_ema_* of the EMA (on its own device, without autocast if that is not ours)."""
    stats = {}
    for prefix, net in (("test", model), ("test_ema", model_ema.module if model_ema is not None else None)):
        if net is None:
            continue
        net_device = next(net.parameters()).device
        s = evaluate(net, loader, net_device, amp_dtype=amp_dtype if net_device == ctx.device else None,
                     num_classes=num_classes, distributed_eval=ctx.args.dist_eval and ctx.world > 1,
                     rank=ctx.rank, channels_last=ctx.args.channels_last,
                     header="Test:" if prefix == "test" else "Test (EMA):")
        stats.update({f"{prefix}_{k}": v for k, v in s.items()})
    return stats


def run_eval(ctx: Context, model, loader, num_classes: int) -> dict:
    """--eval: an official file (--pretrained, one set of weights; pick it with --checkpoint-key) or one of
    our checkpoints (--resume: the model and, with --model-ema, its EMA)."""
    args = ctx.args
    if not args.pretrained and not args.resume:
        raise ConfigError("--eval needs weights: --pretrained FILE (official or ours) or --resume FILE")
    model_ema = None
    if args.resume:
        path = ckpts.resolve_resume(args)
        if path is None:
            raise FileNotFoundError(f"--resume auto: no checkpoint.pth in {args.output_dir}")
        model_ema = build_ema(args, model, 1) if args.model_ema else None
        ckpt = ckpts.load_weights(path, model, model_ema, strict_ema=False, model_name=args.model)
        if ckpt.get("model_ema") is None:
            model_ema = None
    amp_dtype, _ = amp_setup(args, ctx.device, ctx.rank)
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = {"n_parameters": n_parameters, **evaluate_all(ctx, model, model_ema, loader, num_classes, amp_dtype)}
    if ctx.is_main:
        print(json.dumps(stats), flush=True)
    return stats


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
