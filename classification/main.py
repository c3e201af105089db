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

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # `python classification/main.py` puts this folder first on sys.path, where `utils`/`engine` would shadow
    # same-named top-level modules; the package is imported as `classification.*` instead.
    sys.path.pop(0)

import timm
import torch
import torch.nn as nn
from timm.data import Mixup, create_transform
from timm.data.distributed_sampler import RepeatAugSampler
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

import models  # noqa: F401  (registers every backbone with timm)
from classification.config import ConfigError, args_to_dict, parse_args
from classification.engine import evaluate, throughput, train_one_epoch
from classification.utils import (barrier, cleanup_distributed, gather_rng_states, init_distributed,
                                  load_checkpoint_file, provenance, save_atomic, seed_all, set_rng_state)

LOG_KEYS = ("epoch", "n_parameters", "train_lr", "train_loss", "test_loss", "test_acc1", "test_acc5",
            "test_ema_loss", "test_ema_acc1", "test_ema_acc5")


# ---------------------------------------------------------------------------------------------- data
def dataset_root(args, rank: int) -> pathlib.Path:
    if args.data_path is None:
        from classification.embedded_data import ensure_embedded_dataset

        if rank == 0:
            root = ensure_embedded_dataset()
        barrier()
        if rank != 0:
            root = ensure_embedded_dataset()
        return pathlib.Path(root)
    root = pathlib.Path(args.data_path)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-path {root}: no such directory (expected an ImageFolder root with "
                                f"train/ and val/ inside)")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"--data-path {root}: missing the {split}/ folder (expected "
                                    f"{root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG)")
    return root


def build_datasets(args, root: pathlib.Path, need_train: bool):
    from torchvision.datasets import ImageFolder

    eval_tf = create_transform(args.input_size, is_training=False, interpolation=args.eval_interpolation,
                               crop_pct=args.crop_pct)
    val = ImageFolder(str(root / "val"), transform=eval_tf)
    train = None
    if need_train:
        train_tf = create_transform(
            args.input_size, is_training=True, no_aug=args.no_aug, scale=tuple(args.scale),
            color_jitter=args.color_jitter, auto_augment=args.aa, interpolation=args.train_interpolation,
            re_prob=args.reprob, re_mode=args.remode, re_count=args.recount)
        train = ImageFolder(str(root / "train"), transform=train_tf)
        if train.classes != val.classes:
            raise ValueError(f"{root}: train/ and val/ have different class folders "
                             f"({len(train.classes)} vs {len(val.classes)})")
    return train, val


def build_loaders(args, train, val, rank, world):
    loaders = {}
    if train is not None:
        if args.repeated_aug:
            sampler = RepeatAugSampler(train, num_replicas=world, rank=rank, shuffle=True)
        else:
            sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        loaders["train"] = DataLoader(train, sampler=sampler, batch_size=args.batch_size,
                                      num_workers=args.num_workers, pin_memory=args.pin_mem, drop_last=True,
                                      persistent_workers=args.num_workers > 0)
        if len(loaders["train"]) == 0:
            raise ValueError(f"training set of {len(train)} images gives no full batch of {args.batch_size} "
                             f"per process x {world} processes; lower --batch-size")
    if args.dist_eval and world > 1:
        val_sampler = list(range(rank, len(val), world))  # exact split, no padding duplicates
    else:
        val_sampler = SequentialSampler(val)
    loaders["val"] = DataLoader(val, sampler=val_sampler, batch_size=args.eval_batch_size or args.batch_size,
                                num_workers=args.num_workers, pin_memory=args.pin_mem, drop_last=False)
    return loaders


# ---------------------------------------------------------------------------------------------- model
def build_model(args, num_classes: int | None) -> nn.Module:
    kwargs = dict(args.model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    kwargs["drop_rate"] = args.drop
    if args.drop_path is not None:
        kwargs["drop_path_rate"] = args.drop_path
    if args.pretrained:
        if not os.path.isfile(args.pretrained):
            raise FileNotFoundError(f"--pretrained {args.pretrained}: file not found")
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


def checkpoint_state(args, model, model_ema, optimizer, lr_scheduler, scaler, epoch, best, n_parameters, rng):
    return {
        "model": model.state_dict(),
        "model_ema": model_ema.module.state_dict() if model_ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "best": best,
        "n_parameters": n_parameters,
        "args": args_to_dict(args),
        "rng": rng,
    }


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device, rank, world, _ = init_distributed(args.device)
    try:
        return run(args, device, rank, world)
    finally:
        cleanup_distributed()


def run(args, device, rank, world) -> dict:
    is_main = rank == 0
    if is_main:
        print(f"model {args.model}, device {device}, {world} process(es), config {args.config}", flush=True)
        if args.preset_applied:
            print("embedded-run preset (no data_path; explicit flags win): "
                  + json.dumps(args.preset_applied), flush=True)
    seed_all(args.seed)  # the same initial weights on every process
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    if args.throughput:
        model = build_model(args, None).to(device)
        amp_dtype, _ = amp_setup(args, device, rank)
        ips = throughput(model, device, args.batch_size, args.input_size, amp_dtype)
        if is_main:
            print(json.dumps({"model": args.model, "batch_size": args.batch_size, "input_size": args.input_size,
                              "throughput_img_s": ips}), flush=True)
        return {"throughput": ips}

    root = dataset_root(args, rank)
    train_set, val_set = build_datasets(args, root, need_train=not args.eval)
    num_classes = len(val_set.classes)
    model = build_model(args, num_classes)
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if args.sync_bn and has_bn and world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif is_main:
            print("note: SyncBatchNorm needs CUDA; using BatchNorm (statistics per process, buffers "
                  "broadcast from rank 0 by DDP)", flush=True)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    seed_all(args.seed + rank)  # data order is from the sampler's seed; augmentation differs per process
    amp_dtype, scaler = amp_setup(args, device, rank)
    loaders = build_loaders(args, train_set, val_set, rank, world)
    distributed_eval = args.dist_eval and world > 1
    out_dir = pathlib.Path(args.output_dir)

    model_ema = None
    if args.model_ema:
        model_ema = ModelEmaV3(model, decay=args.model_ema_decay, use_warmup=args.model_ema_warmup,
                               device=torch.device("cpu") if args.model_ema_force_cpu else None)
        if args.mesa and args.model_ema_force_cpu and device.type != "cpu":
            raise ConfigError("mesa needs the EMA teacher on the training device: drop model_ema_force_cpu")

    def eval_all(net, ema):
        stats = {}
        for prefix, m in (("test", net), ("test_ema", ema.module if ema is not None else None)):
            if m is None:
                continue
            m_dev = next(m.parameters()).device
            s = evaluate(m, loaders["val"], m_dev, amp_dtype=amp_dtype if m_dev == device else None,
                         num_classes=num_classes, distributed_eval=distributed_eval, rank=rank,
                         channels_last=args.channels_last,
                         header="Test:" if prefix == "test" else "Test (EMA):")
            stats.update({f"{prefix}_{k}": v for k, v in s.items()})
        return stats

    if args.eval:
        if not args.pretrained and not args.resume:
            raise ConfigError("--eval needs weights: --pretrained FILE (official or ours) or --resume FILE")
        if args.resume:
            path = resolve_resume(args)
            if path is None:
                raise FileNotFoundError(f"--resume auto: no checkpoint.pth in {args.output_dir}")
            ckpt = load_checkpoint_file(path)
            model.load_state_dict(ckpt["model"])
            if model_ema is not None and ckpt.get("model_ema") is not None:
                model_ema.module.load_state_dict(ckpt["model_ema"])
            elif model_ema is not None:
                model_ema = None
        elif model_ema is not None:
            model_ema = None  # an official file gives one set of weights (choose it with --checkpoint-key)
        stats = {"n_parameters": n_parameters, **eval_all(model, model_ema)}
        if is_main:
            print(json.dumps(stats), flush=True)
        return stats

    # optimizer, lr, schedule
    global_batch = args.batch_size * world * args.accum_iter
    lr = args.lr * global_batch / args.lr_base_size if args.lr_base_size else args.lr
    opt_kwargs = {}
    if any(name in args.opt.lower() for name in ("adam", "lamb", "lion", "nadam")):
        opt_kwargs["eps"] = args.opt_eps
        if args.opt_betas is not None:
            opt_kwargs["betas"] = tuple(args.opt_betas)
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=lr, weight_decay=args.weight_decay,
                                    momentum=args.momentum, **opt_kwargs)
    updates_per_epoch = math.ceil(len(loaders["train"]) / args.accum_iter)
    lr_scheduler, _ = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, cooldown_epochs=args.cooldown_epochs,
        step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    if is_main:
        print(f"params {n_parameters:,}; global batch {global_batch} = {args.batch_size} x {world} process(es) "
              f"x {args.accum_iter} accumulation; lr {lr:.4g}; {updates_per_epoch} updates/epoch; "
              f"{len(train_set)} train / {len(val_set)} val images, {num_classes} classes", flush=True)

    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None:
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                         prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                         label_smoothing=args.smoothing, num_classes=num_classes)
        criterion = SoftTargetCrossEntropy()
    elif args.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    start_epoch, best = 0, {"metric": "test_ema_acc1" if model_ema is not None else "test_acc1",
                            "value": -1.0, "epoch": -1}
    resume_path = resolve_resume(args) if args.resume else None
    if resume_path:
        ckpt = load_checkpoint_file(resume_path)
        model.load_state_dict(ckpt["model"])
        if model_ema is not None:
            if ckpt.get("model_ema") is None:
                raise ConfigError(f"{resume_path} has no model_ema but this run keeps an EMA")
            model_ema.module.load_state_dict(ckpt["model_ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch = ckpt["epoch"] + 1
        best = ckpt["best"]
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[rank])
        elif is_main:
            print(f"note: checkpoint has RNG states of {len(rng)} process(es), this run has {world}: "
                  f"reseeding instead", flush=True)
        if is_main:
            print(f"resumed from {resume_path} (epoch {ckpt['epoch']} done)", flush=True)

    train_model = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=args.find_unused_parameters)
    if args.torchcompile:
        # after the DDP wrap, as timm's train.py: dynamo splits the graph at DDP's buckets; checkpoints and
        # evaluation keep using the plain `model`
        train_model = torch.compile(train_model, backend=args.torchcompile)

    writer = step_log = None
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        prov = provenance(world, device)
        prov["config"] = args_to_dict(args)
        prov["data"] = str(root)
        with open(out_dir / ("provenance.json" if start_epoch == 0 else f"provenance-resume-{start_epoch}.json"),
                  "w") as f:
            json.dump(prov, f, indent=2)
        if args.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ConfigError("--tensorboard needs the `tensorboard` package (pip install tensorboard)") from err
            writer = SummaryWriter(str(out_dir / "tb"))
        if start_epoch == 0:  # a fresh run replaces the logs of an earlier one in the same output_dir
            (out_dir / "log.txt").unlink(missing_ok=True)
        if args.step_log:
            step_log = open(out_dir / "steps.jsonl", "a" if start_epoch else "w")
    elif args.step_log:
        step_log = False  # other ranks take part in the reduction but do not write
    end_epoch = args.epochs
    if args.max_epochs_this_run is not None:
        end_epoch = min(end_epoch, start_epoch + args.max_epochs_this_run)

    start = time.time()
    log_stats = {}
    try:
        for epoch in range(start_epoch, end_epoch):
            loaders["train"].sampler.set_epoch(epoch)
            mesa_on = args.mesa > 0 and epoch >= int(args.mesa_start_ratio * args.epochs)
            train_stats = train_one_epoch(
                train_model, criterion, loaders["train"], optimizer, lr_scheduler, scaler, device, epoch, args,
                amp_dtype=amp_dtype, model_ema=model_ema, mixup_fn=mixup_fn, mesa_on=mesa_on,
                updates_per_epoch=updates_per_epoch, rank=rank, world=world,
                step_log=_StepLog(step_log) if step_log is not None else None, writer=writer)
            test_stats = eval_all(model, model_ema)
            log_stats = {"epoch": epoch, "n_parameters": n_parameters, "train_lr": train_stats["lr"],
                         "train_loss": train_stats["loss"], **test_stats}
            value = log_stats[best["metric"]]
            is_best = value > best["value"]
            if is_best:
                best = {"metric": best["metric"], "value": value, "epoch": epoch}
            rng = gather_rng_states()
            if is_main:
                state = checkpoint_state(args, model, model_ema, optimizer, lr_scheduler, scaler, epoch, best,
                                         n_parameters, rng)
                save_atomic(state, str(out_dir / "checkpoint.pth"))
                if args.save_freq and (epoch + 1) % args.save_freq == 0:
                    save_atomic(state, str(out_dir / f"checkpoint-{epoch}.pth"))
                if is_best:
                    save_atomic({k: state[k] for k in ("model", "model_ema", "epoch", "best", "n_parameters", "args")}
                                | {"test_stats": test_stats}, str(out_dir / "best.pth"))
                with open(out_dir / "log.txt", "a") as f:
                    f.write(json.dumps({k: log_stats[k] for k in LOG_KEYS if k in log_stats}) + "\n")
                if writer is not None:
                    for k, v in log_stats.items():
                        if k not in ("epoch", "n_parameters"):
                            writer.add_scalar(k, v, epoch)
                print(f"epoch {epoch}: {best['metric']} {value:.2f} (best {best['value']:.2f} at epoch "
                      f"{best['epoch']}); {time.time() - start:.0f}s elapsed", flush=True)
            barrier()
    finally:
        if step_log:
            step_log.close()
        if writer is not None:
            writer.close()
    if is_main:
        print(f"training time {time.time() - start:.0f}s; best {best['metric']} {best['value']:.2f} "
              f"(epoch {best['epoch']}); output in {out_dir}", flush=True)
    return {"last": log_stats, "best": best}


class _StepLog:
    """Rank 0 writes the per-update lines; other ranks only join the all-reduce."""

    def __init__(self, f):
        self.f = f

    def write(self, text):
        if self.f:
            self.f.write(text)

    def flush(self):
        if self.f:
            self.f.flush()


def resolve_resume(args) -> str | None:
    """--resume FILE, or 'auto': <output_dir>/checkpoint.pth when it exists (else None: start fresh)."""
    if args.resume == "auto":
        path = pathlib.Path(args.output_dir) / "checkpoint.pth"
        return str(path) if path.is_file() else None
    if not os.path.isfile(args.resume):
        raise FileNotFoundError(f"--resume {args.resume}: checkpoint not found")
    return args.resume


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
