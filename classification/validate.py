"""Validate one or many checkpoints (official files or this trainer's) on one split, with timm's validate.py
semantics: top-1 / top-5 and their errors, ReaL labels with --real-labels real.json, test-time pooling with
--test-pool, one result per checkpoint written to --results-file (CSV or JSON by its extension).

    python classification/validate.py --model mpvit_small --checkpoint mpvit_small.pth --data-path /imagenet
    python classification/validate.py --model ppma_tiny --checkpoint output/classification/ppma_tiny__ppma_tiny \
        --use-ema --results-file results.csv      # every *.pth of the folder (a glob works too)

Weights load through the model's own loader (official containers and key layouts, or ours: `model`, and
`model_ema` with --use-ema). One process; mean / std / crop_pct / interpolation come from the model's
pretrained_cfg (timm resolve_data_config) unless given.
"""
from __future__ import annotations

import argparse
import copy
import csv
import glob
import json
import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # as in main.py: import this package as `classification.*`

import timm
import torch
from timm.data import RealLabelsImagenet
from timm.layers import TestTimePoolHead

import models  # noqa: F401  (registers every backbone with timm)
from classification import data as cls_data
from classification.config import DEFAULTS, ConfigError
from classification.engine import evaluate
from classification.main import USER_ERRORS
from classification.utils import check_readable

RESULT_KEYS = ("checkpoint", "model", "top1", "top1_err", "top5", "top5_err", "loss", "param_count", "img_size",
               "crop_pct", "interpolation", "test_time_pool", "real_labels")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="classification/validate.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--checkpoint", required=True, help="a weights file, a folder (all its *.pth) or a glob")
    p.add_argument("--use-ema", action="store_true", help="the EMA weights of our checkpoints (key model_ema)")
    p.add_argument("--checkpoint-key", default=None, help="container key to load (default: automatic)")
    p.add_argument("--data-path", default=None, help="dataset root (default: the embedded dataset)")
    p.add_argument("--dataset", default="", help="timm create_dataset name ('' = folder or tar, hfds/<name>)")
    p.add_argument("--split", default="val", help="split to validate (folder, tar or hfds split)")
    p.add_argument("--class-map", default=None, help="class map file")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the checkpoint (default: dataset's)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the model's)")
    p.add_argument("--crop-pct", type=float, default=None)
    p.add_argument("--mean", type=float, nargs=3, default=None)
    p.add_argument("--std", type=float, nargs=3, default=None)
    p.add_argument("--interpolation", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--pin-mem", action="store_true")
    p.add_argument("--amp", action="store_true", help="autocast (CUDA: --amp-dtype; CPU: bfloat16 only)")
    p.add_argument("--amp-dtype", default="float16", choices=("float16", "bfloat16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--real-labels", default=None, help="ImageNet ReaL labels file (real.json): report ReaL top-1/5")
    p.add_argument("--test-pool", action="store_true", help="test-time pooling (timm) when img-size > the model's")
    p.add_argument("--results-file", default=None, help="write the results: .csv or .json")
    p.add_argument("--print-freq", type=int, default=50)
    p.add_argument("--bad-images", default="skip", choices=("skip", "stop"),
                   help="an unreadable image file: leave it out of the counts with a warning, or stop naming it")
    return p


def checkpoint_files(spec: str) -> list[str]:
    """A file, every *.pth / *.pth.tar of a folder, or the files a glob matches (sorted)."""
    if os.path.isdir(spec):
        files = glob.glob(os.path.join(spec, "*.pth")) + glob.glob(os.path.join(spec, "*.pth.tar"))
    else:
        files = glob.glob(spec) if any(c in spec for c in "*?[") else [spec]
    files = sorted(f for f in files if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"--checkpoint {spec}: no checkpoint file found")
    return files


def trainer_args(args) -> argparse.Namespace:
    """The trainer's options for the shared data functions (classification/data.py)."""
    return argparse.Namespace(**{**DEFAULTS, "data_path": args.data_path, "dataset": args.dataset,
                                 "val_split": args.split, "class_map": args.class_map, "num_classes": args.num_classes,
                                 "input_size": args.img_size, "crop_pct": args.crop_pct, "mean": args.mean,
                                 "std": args.std, "eval_interpolation": args.interpolation,
                                 "batch_size": args.batch_size, "num_workers": args.workers, "pin_mem": args.pin_mem,
                                 "dist_eval": False, "bad_images": args.bad_images})


def load_model(args, path: str, num_classes: int):
    check_readable(path, "--checkpoint")  # an empty / truncated / non-torch file named as such
    overlay = dict(file=os.path.abspath(path), num_classes=num_classes)
    key = "model_ema" if args.use_ema else args.checkpoint_key
    if key:
        overlay["checkpoint_key"] = key
    return timm.create_model(args.model, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=overlay)


def with_test_pool(model, cfg: dict, device):
    """timm's TestTimePoolHead when the input is larger than the model's; refused unless the head is global
    pooling + a linear classifier, checked by equal logits at the model's own size (PPMA's and Spatial-Mamba's
    heads are not)."""
    native = model.pretrained_cfg["input_size"]
    if cfg["input_size"][-1] <= native[-1] or cfg["input_size"][-2] <= native[-2]:
        return model, False
    x = torch.randn(1, *native, device=device)
    try:
        pooled = TestTimePoolHead(copy.deepcopy(model), original_pool=model.pretrained_cfg["pool_size"]).eval()
        with torch.no_grad():
            ok = torch.allclose(pooled(x), model(x), rtol=1e-4, atol=1e-4)
    except (RuntimeError, ValueError, AttributeError, KeyError):  # features or head of another shape
        ok = False
    if not ok:
        raise ConfigError(f"--test-pool: {type(model).__name__}'s head is not global pooling + a linear "
                          f"classifier; test-time pooling would change its predictions")
    return pooled, True


def validate_one(args, targs, path: str, val, num_classes: int, device) -> dict:
    model = load_model(args, path, num_classes).to(device).eval()
    param_count = sum(p.numel() for p in model.parameters())
    targs.input_size = args.img_size or model.pretrained_cfg["input_size"][-1]
    cfg = cls_data.data_config(targs, model)
    cls_data.set_transforms(targs, cfg, None, val)
    test_pool = False
    if args.test_pool:
        model, test_pool = with_test_pool(model, cfg, device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    loaders, _ = cls_data.build_loaders(targs, cfg, None, val, 0, 1, device, num_classes)
    k5 = min(5, num_classes)
    real = (RealLabelsImagenet(val.filenames(basename=True), real_json=args.real_labels, topk=(1, k5))
            if args.real_labels else None)
    amp_dtype = None
    if args.amp and (device.type == "cuda" or args.amp_dtype == "bfloat16"):
        amp_dtype = torch.bfloat16 if args.amp_dtype == "bfloat16" else torch.float16
    stats = evaluate(model, loaders["val"], device, amp_dtype=amp_dtype, num_classes=num_classes,
                     distributed_eval=False, print_freq=args.print_freq, channels_last=args.channels_last,
                     header=f"Test {os.path.basename(path)}:", on_output=real.add_result if real else None)
    skipped = loaders["val"].dataset.unreadable(device)
    if skipped:
        print(f"warning: {len(skipped)} unreadable image file(s) left out: {', '.join(skipped[:5])}", flush=True)
    top1, top5 = (real.get_accuracy(1), real.get_accuracy(k5)) if real else (stats["acc1"], stats["acc5"])
    return dict(checkpoint=path, model=args.model, top1=round(top1, 4), top1_err=round(100 - top1, 4),
                top5=round(top5, 4), top5_err=round(100 - top5, 4), loss=round(stats["loss"], 6),
                param_count=round(param_count / 1e6, 2), img_size=cfg["input_size"][-1], crop_pct=cfg["crop_pct"],
                interpolation=cfg["interpolation"], test_time_pool=test_pool, real_labels=real is not None)


def write_results(path: str, results: list[dict]):
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
    elif path.endswith(".csv"):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=RESULT_KEYS)
            writer.writeheader()
            writer.writerows(results)
    else:
        raise ConfigError(f"--results-file {path}: the name must end in .csv or .json")


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if args.results_file and not args.results_file.endswith((".csv", ".json")):
        raise ConfigError(f"--results-file {args.results_file}: the name must end in .csv or .json")
    if args.real_labels and not os.path.isfile(args.real_labels):
        raise FileNotFoundError(f"--real-labels {args.real_labels}: file not found")
    files = checkpoint_files(args.checkpoint)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    targs = trainer_args(args)
    root = cls_data.dataset_root(targs, 0, need_train=False)
    _, val = cls_data.build_datasets(targs, root, need_train=False)
    num_classes = cls_data.num_classes_of(targs, val)
    results = []
    for path in files:
        results.append(validate_one(args, targs, path, val, num_classes, device))
        print(json.dumps(results[-1]), flush=True)
    if args.results_file:
        write_results(args.results_file, results)
    return results


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
