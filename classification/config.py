"""Command line + YAML configuration of the classification trainer.

Every option is one flat key (the argparse destination): ``--warmup-epochs 5`` on the command line is
``warmup_epochs: 5`` in a YAML config (``--warmup_epochs`` is accepted too, as the official scripts spell it).
Precedence: built-in defaults < embedded-run preset (only without ``data_path``) < YAML config < flags.
Exception: the preset is meant to shrink a paper recipe to a few CPU minutes, so it wins over the YAML and
only explicit flags win over it. Unknown keys and flags are errors naming the closest valid key (timm's
train.py takes any YAML key as an attribute, so a misspelt key silently trains another recipe).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import json
import os
import pathlib

import yaml

# (key, type, default, help).  type: bool, int, float, str, or one of "list" (numbers), "kwargs" (a mapping:
# YAML mapping in a config; `key=value ...` as timm's --model-kwargs, or a YAML/JSON mapping, on the command
# line), "int_or_none", "backend" (a string whose flag may stand alone, meaning "inductor"), "checkpointing"
# (a bool, or "selective": the flag alone is True).
# A default of None means the key may be null.
OPTIONS: list[tuple[str, object, object, str]] = [
    # model
    ("model", str, None, "timm model name registered by `models` (required)"),
    ("model_kwargs", "kwargs", None, "extra keyword arguments for timm.create_model (key=value ... or a mapping)"),
    ("pretrained", str, None, "checkpoint to initialise from (official or ours), loaded by the model's loader"),
    ("checkpoint_key", str, None, "container key of --pretrained to load (e.g. model_ema); default: automatic"),
    ("num_classes", "int_or_none", None, "classifier classes (null = the dataset's class count)"),
    ("drop", float, 0.0, "dropout rate"),
    ("drop_path", float, None, "stochastic depth rate (null = the model's default)"),
    ("grad_checkpointing", "checkpointing", False, "activation checkpointing of the model's blocks "
     "(model.set_grad_checkpointing): the flag alone recomputes every block in backward, 'selective' only its cheap "
     "ops (same gradients, less memory, less time than full)"),
    ("find_unused_parameters", bool, False, "DDP find_unused_parameters"),
    # data
    ("data_path", str, None, "dataset root: folder with the split folders / tar files, or the Hugging Face cache "
     "(null = embedded default dataset)"),
    ("dataset", str, "", "timm create_dataset name: '' = image folder or tar, 'hfds/<name>' = Hugging Face datasets"),
    ("train_split", str, "train", "training split (folder or tar under data_path, or the hfds split)"),
    ("val_split", str, "val", "validation split"),
    ("class_map", str, None, "class map file (timm create_dataset class_map: one class folder name per line)"),
    ("input_size", int, 224, "square train/eval resolution"),
    ("crop_pct", float, None, "eval centre-crop fraction (null = the model's pretrained_cfg via resolve_data_config)"),
    ("mean", "list", None, "normalisation mean (null = the model's, via resolve_data_config)"),
    ("std", "list", None, "normalisation std (null = the model's, via resolve_data_config)"),
    ("train_interpolation", str, "bicubic", "train resize interpolation"),
    ("eval_interpolation", str, None, "eval resize interpolation (null = the model's, via resolve_data_config)"),
    ("scale", "list", [0.08, 1.0], "RandomResizedCrop area range"),
    ("no_aug", bool, False, "train transform = eval transform (no random crop/flip/RandAugment/erasing)"),
    ("batch_size", int, 64, "batch size PER PROCESS"),
    ("eval_batch_size", int, None, "eval batch size per process (null = batch_size)"),
    ("num_workers", int, 8, "data loader workers per process"),
    ("pin_mem", bool, True, "pin memory in the data loaders"),
    ("repeated_aug", bool, True, "repeated augmentation, 3 repeats (DeiT's flag; --aug-repeats sets the count)"),
    ("aug_repeats", int, 0, "repeated augmentation count (timm RepeatAugSampler; 0 = 3 if repeated_aug else off)"),
    ("prefetcher", bool, False, "timm's PrefetchLoader: uint8 batches, normalisation and random erasing on the "
     "device, mixup in the collate (timm train.py's default)"),
    ("use_multi_epochs_loader", bool, False, "timm's MultiEpochsDataLoader (workers live across epochs)"),
    # optimisation
    ("epochs", int, 300, "schedule epochs (timm: the run trains these + the warmup with warmup_prefix + cooldown)"),
    ("accum_iter", int, 1, "gradient accumulation steps"),
    ("opt", str, "adamw", "timm optimizer name"),
    ("opt_eps", float, 1e-8, "optimizer epsilon (null = optimizer default)"),
    ("opt_betas", "list", None, "optimizer betas (null = optimizer default)"),
    ("opt_kwargs", "kwargs", None, "extra optimizer arguments (timm --opt-kwargs)"),
    ("momentum", float, 0.9, "SGD momentum"),
    ("weight_decay", float, 0.05, "weight decay (timm skips 1-D params, biases and no_weight_decay())"),
    ("layer_decay", float, None, "layer-wise lr decay (timm; null = off)"),
    ("clip_grad", float, None, "gradient clipping threshold (null = off)"),
    ("clip_mode", str, "norm", "gradient clipping mode: norm, value or agc"),
    ("lr", float, 5e-4, "base learning rate"),
    ("lr_base_size", "int_or_none", 512, "lr used = lr * global_batch / lr_base_size (null = lr as given)"),
    ("lr_base_scale", str, "linear", "batch scaling of the lr: linear or sqrt"),
    ("warmup_lr", float, 1e-6, "warmup start lr"),
    ("min_lr", float, 1e-5, "lower lr bound of the schedule"),
    ("auto_scale_warmup_min_lr", bool, False, "scale warmup_lr and min_lr with the global batch like the lr"),
    ("sched", str, "cosine", "timm scheduler name (create_scheduler_v2)"),
    ("sched_on_updates", bool, False, "step the schedule after every optimizer update, not after every epoch"),
    ("sched_lag", bool, False, "step with the index of the epoch/update just finished, as DeiT's "
     "lr_scheduler.step(epoch) and Swin's step_update(epoch * n + idx) do (each runs at the previous one's lr)"),
    ("warmup_epochs", float, 5, "warmup epochs"),
    ("warmup_prefix", bool, False, "the warmup precedes the `epochs` of the schedule (timm warmup_prefix)"),
    ("cooldown_epochs", float, 0, "epochs at min_lr after the schedule (trained, as in timm's train.py)"),
    ("decay_epochs", float, 90, "step: decay interval in epochs; wsd/rsqrt: decay phase"),
    ("decay_milestones", "list", [90, 180, 270], "multistep: epochs of the decays"),
    ("decay_rate", float, 0.1, "step/multistep/plateau decay rate; poly power"),
    ("patience_epochs", float, 10, "plateau patience"),
    ("lr_cycle_mul", float, 1.0, "cycle length multiplier (cosine, tanh, poly)"),
    ("lr_cycle_decay", float, 0.5, "lr decay per cycle"),
    ("lr_cycle_limit", int, 1, "number of cycles"),
    ("lr_k_decay", float, 1.0, "k-decay (cosine, poly)"),
    ("lr_noise", "list", None, "lr noise on/off points as fractions of the schedule"),
    ("lr_noise_pct", float, 0.67, "lr noise limit percent"),
    ("lr_noise_std", float, 1.0, "lr noise std-dev"),
    # augmentation and regularisation
    ("color_jitter", float, 0.4, "colour jitter (timm: off when RandAugment is on)"),
    ("aa", str, "rand-m9-mstd0.5-inc1", "RandAugment policy string (null = off)"),
    ("smoothing", float, 0.1, "label smoothing"),
    ("reprob", float, 0.25, "random erasing probability"),
    ("remode", str, "pixel", "random erasing mode"),
    ("recount", int, 1, "random erasing count"),
    ("mixup", float, 0.8, "mixup alpha (0 = off)"),
    ("cutmix", float, 1.0, "cutmix alpha (0 = off)"),
    ("cutmix_minmax", "list", None, "cutmix min/max ratio (overrides alpha)"),
    ("mixup_prob", float, 1.0, "probability of mixup or cutmix per batch"),
    ("mixup_switch_prob", float, 0.5, "probability of cutmix instead of mixup"),
    ("mixup_mode", str, "batch", "mixup mode: batch, pair or elem"),
    # EMA and MESA
    ("model_ema", bool, False, "keep an EMA of the weights and evaluate it every epoch"),
    ("model_ema_decay", float, 0.99996, "EMA decay"),
    ("model_ema_decay_base_size", "int_or_none", None, "EMA decay used = model_ema_decay ** (global_batch / this) "
     "(null = as given)"),
    ("model_ema_force_cpu", bool, False, "keep the EMA on the CPU"),
    ("model_ema_warmup", bool, False, "EMA decay warmup (timm ModelEmaV3 use_warmup)"),
    ("mesa", float, 0.0, "MESA self-distillation weight (EMA teacher; 0 = off)"),
    ("mesa_start_ratio", float, 0.25, "fraction of the trained epochs after which MESA starts"),
    # precision and devices
    ("amp", bool, False, "mixed precision (CUDA: fp16/bf16; CPU: bf16 only, fp16 falls back to fp32)"),
    ("amp_dtype", str, "float16", "float16 or bfloat16"),
    ("sync_bn", bool, False, "SyncBatchNorm (CUDA multi-process only; BN with broadcast buffers otherwise)"),
    ("dist_eval", bool, False, "split the validation set over processes (exact: no padding)"),
    ("device", str, None, "cuda, cpu, ... (null = CUDA if available)"),
    ("dist_backend", str, None, "torch.distributed backend (null = nccl on CUDA, gloo on CPU)"),
    ("dist_url", str, None, "torch.distributed init method (null = env://: torchrun or SLURM variables)"),
    ("channels_last", bool, False, "channels_last memory format for the model and its input batches"),
    ("cpu_keep_freed_memory", bool, True, "on a CPU device, glibc keeps freed memory in the process instead of "
     "returning it and faulting it in again at the next step (mallopt; MALLOC_MMAP_THRESHOLD_ / "
     "MALLOC_TRIM_THRESHOLD_ in the environment win)"),
    ("torchcompile", "backend", None, "torch.compile the training model with this backend (flag alone: "
     "inductor; null = eager), as timm's --torchcompile"),
    # run control
    ("seed", int, 0, "random seed (data randomness uses seed + rank)"),
    ("output_dir", str, None, "where log.txt and checkpoints go (null = output/classification/<model>__<config>)"),
    ("resume", str, None, "checkpoint to resume from ('auto' = <output_dir>/checkpoint.pth if present)"),
    ("no_resume_opt", bool, False, "on resume, restore the weights (and EMA) only, not optimizer/scaler/schedule"),
    ("start_epoch", "int_or_none", None, "epoch to start at (overrides the resumed one; the schedule follows)"),
    ("eval", bool, False, "only evaluate (--pretrained or --resume) and exit"),
    ("throughput", bool, False, "only measure inference throughput and exit"),
    ("save_freq", int, 0, "also keep checkpoint-<epoch>.pth every N epochs (0 = off)"),
    ("save_every_steps", int, 0, "also write recovery.pth every N optimizer updates within an epoch (timm's "
     "recovery_interval; 0 = off): --resume auto continues from it mid-epoch"),
    ("nonfinite", str, "skip", "a non-finite loss or gradient norm: skip that update and count it (the run stops "
     "after nonfinite_limit in a row), or stop at the first"),
    ("nonfinite_limit", int, 5, "with nonfinite skip: stop after this many non-finite updates in a row"),
    ("bad_images", str, "skip", "an unreadable image file in the data: skip it with a warning and a count "
     "(training: the next image takes its place; evaluation: it is left out), or stop naming it"),
    ("checkpoint_hist", int, 0, "keep the N best epochs' checkpoints (checkpoint-<epoch>.pth, by the eval metric; "
     "checkpoint.pth is always the last)"),
    ("tensorboard", bool, False, "write TensorBoard scalars to <output_dir>/tb"),
    ("log_wandb", bool, False, "log the epoch summary to Weights & Biases (needs the wandb package)"),
    ("wandb_project", str, None, "W&B project (null = wandb's default)"),
    ("print_freq", int, 10, "console progress line every N iterations"),
    ("step_log", bool, False, "also write <output_dir>/steps.jsonl: the global loss and lr of every update"),
    ("max_epochs_this_run", int, None, "stop after this many epochs in this invocation (then --resume goes on)"),
    ("embedded_preset", bool, True, "without data_path, apply the embedded-run preset (args.yaml turns it off: "
     "its values are already resolved)"),
]

# Length rules of the "list" options: exact count or (min, max).
LIST_LENGTHS = {"scale": (2, 2), "opt_betas": (2, 3), "cutmix_minmax": (2, 2), "mean": (3, 3), "std": (3, 3),
                "lr_noise": (1, 2), "decay_milestones": (1, 1000)}

OPTION_TYPES = {k: t for k, t, _, _ in OPTIONS}
DEFAULTS = {k: d for k, _, d, _ in OPTIONS}
KEYS = tuple(DEFAULTS)

# Embedded-run preset: shrinks any paper recipe to a few minutes on 2 CPU cores (2 processes x 1 thread)
# on the embedded default dataset (10 classes, 1,600 train / 400 val images, 64 px).  Light augmentation
# and a high, unscaled lr so a transformer trained from scratch learns something in ~20 epochs; EMA (when
# the recipe has one) with a short horizon; MESA keeps the recipe's weight and start ratio.  The schedule is
# stepped after every update without lag or warmup prefix: with 50 updates per epoch and 2 warmup epochs a
# per-epoch, lagged schedule would spend 3 of 12 epochs at the warmup lr.  Loader and memory-format choices
# (prefetcher, multi-epoch loader, channels_last) are GPU speed settings and stay off on CPU.
EMBEDDED_PRESET: dict[str, object] = dict(
    input_size=48, crop_pct=0.875, batch_size=16, eval_batch_size=100, accum_iter=1, epochs=12,
    lr=1e-3, lr_base_size=None, warmup_lr=1e-5, min_lr=1e-5, auto_scale_warmup_min_lr=False, warmup_epochs=2,
    cooldown_epochs=0, sched_on_updates=True, sched_lag=False, warmup_prefix=False,
    drop_path=0.0, aa=None, scale=[0.35, 1.0], reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.1,
    repeated_aug=False, aug_repeats=0, model_ema_decay=0.99, model_ema_decay_base_size=None, model_ema_warmup=True,
    num_workers=0, pin_mem=False, prefetcher=False, use_multi_epochs_loader=False, channels_last=False,
    dist_eval=True, sync_bn=False, save_freq=0, weight_decay=0.05,
)
# Per-model adjustments of the preset (prefix of the model name -> keys): input-size minimums and cost.
EMBEDDED_PRESET_MODEL: dict[str, dict[str, object]] = {
    # P2T's pyramid pools need inputs >= 65 px. At lr 1e-3 and global batch 32, P2T-T and PaCa-T collapsed
    # to chance (uniform predictions) within the first epochs; at 6e-4 PaCa-T stayed near chance for 10
    # epochs: 3e-4 for them. P2T-T only leaves chance after ~400 updates, hence 14 epochs (~9 min).
    "p2t_": dict(input_size=72, lr=3e-4, epochs=14),
    "pacavit_": dict(lr=3e-4),
    "spatial_mamba_": dict(input_size=32, epochs=8),  # ~50 s per epoch at 32 px on 2 CPU processes
}


class ConfigError(ValueError):
    """A config file or flag that does not exist or has a value of the wrong type."""


def _closest(key: str) -> str:
    near = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _nullable(conv):
    def parse(text: str):
        return None if text.lower() in ("null", "none") else conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def _parse_kwargs_token(text: str) -> dict:
    """One command-line token of a kwargs option: `key=value` (the value read as a Python literal, else a
    string, as timm's ParseKwargs) or a whole YAML/JSON mapping."""
    if "=" in text and not text.lstrip().startswith("{"):
        key, value = text.split("=", 1)
        try:
            return {key: ast.literal_eval(value)}
        except (ValueError, SyntaxError):
            return {key: value}
    value = yaml.safe_load(text)
    if value is not None and not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected key=value or a mapping (YAML/JSON), got {text!r}")
    return value or {}


class _KwargsAction(argparse.Action):
    """`--model-kwargs a=1 b=x` or `--model-kwargs '{a: 1}'`: the tokens merged into one mapping."""

    def __call__(self, parser, namespace, values, option_string=None):
        merged = {}
        for token in values:
            try:
                merged.update(_parse_kwargs_token(token))
            except (argparse.ArgumentTypeError, yaml.YAMLError) as err:
                parser.error(f"argument {option_string}: {err}")
        setattr(namespace, self.dest, merged)


class _BoolAction(argparse.Action):
    """``--flag`` sets True, ``--no-flag`` False (argparse's BooleanOptionalAction would read ``--no-aug``
    itself as a negation)."""

    def __init__(self, option_strings, dest, **kwargs):
        self.positive = tuple(option_strings)
        negatives = [f"--no-{o[2:]}" for o in option_strings]
        negatives += [f"--no_{o[2:]}" for o in option_strings if "_" in o]
        super().__init__(option_strings + negatives, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string in self.positive)


class _CheckpointingAction(_BoolAction):
    """``--flag`` sets True, ``--flag selective`` 'selective', ``--no-flag`` False."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.nargs = "?"

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string not in self.positive:
            if values is not None:
                parser.error(f"{option_string} takes no value, got {values!r}")
            value = False
        elif values is None:
            value = True
        elif values == "selective":
            value = "selective"
        else:
            parser.error(f"{option_string}: expected nothing (full checkpointing) or 'selective', got {values!r}")
        setattr(namespace, self.dest, value)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits with status 2; keep that, but say which key is wrong
        if message.startswith("unrecognized arguments"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
            hints = "".join(f"\n  {f}{_closest(f[2:].split('=')[0].replace('-', '_'))}" for f in flags)
            message = f"unknown option(s): {message.split(':', 1)[1].strip()}{hints}"
        super().error(message)


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="classification/main.py",
        description="Train / evaluate a `models` backbone on ImageNet-style data (timm building blocks).",
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
    )
    parser.add_argument("--config", type=str, default=argparse.SUPPRESS if suppress_defaults else None,
                        help="YAML file with any of the keys below")
    for key, typ, default, help_text in OPTIONS:
        flags = [f"--{key.replace('_', '-')}"] + ([f"--{key}"] if "_" in key else [])
        kw = {} if suppress_defaults else {"default": default}
        if typ is bool:
            parser.add_argument(*flags, dest=key, action=_BoolAction, help=help_text, **kw)
        elif typ == "list":
            parser.add_argument(*flags, dest=key, nargs="+", type=_nullable(float), help=help_text, **kw)
        elif typ == "kwargs":
            parser.add_argument(*flags, dest=key, nargs="*", action=_KwargsAction, help=help_text, **kw)
        elif typ == "int_or_none":
            parser.add_argument(*flags, dest=key, type=_nullable(int), help=help_text, **kw)
        elif typ == "backend":
            parser.add_argument(*flags, dest=key, nargs="?", const="inductor", type=_nullable(str),
                                help=help_text, **kw)
        elif typ == "checkpointing":
            parser.add_argument(*flags, dest=key, action=_CheckpointingAction, help=help_text, **kw)
        else:
            parser.add_argument(*flags, dest=key, type=_nullable(typ), help=help_text, **kw)
    return parser


def _check_value(key: str, value, source: str):
    typ = OPTION_TYPES[key]
    if value is None:
        return None
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int or typ == "int_or_none":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        if isinstance(value, str):  # PyYAML reads 1e-6 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif typ is str or typ == "backend":
        ok = isinstance(value, str)
    elif typ == "checkpointing":
        ok = isinstance(value, bool) or value == "selective"
    elif typ == "list":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
        value = [float(v) for v in value] if ok else value
    else:  # kwargs
        ok = isinstance(value, dict)
    if not ok:
        name = typ if isinstance(typ, str) else typ.__name__
        raise ConfigError(f"{source}: key {key!r} expects {name}, got {value!r}")
    return value


def load_yaml(path: str | os.PathLike) -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a flat YAML mapping of keys, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if key not in OPTION_TYPES:
            raise ConfigError(f"{path}: unknown config key {key!r}{_closest(str(key))}")
        out[key] = _check_value(key, value, str(path))
    return out


def embedded_preset(model: str | None) -> dict:
    preset = dict(EMBEDDED_PRESET)
    for prefix, extra in EMBEDDED_PRESET_MODEL.items():
        if model and model.startswith(prefix):
            preset.update(extra)
    return preset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses flags, merges the YAML config and (without data_path) the embedded-run preset."""
    args = build_parser().parse_args(argv)
    explicit = {k: v for k, v in vars(build_parser(suppress_defaults=True).parse_args(argv)).items() if k != "config"}
    from_yaml = load_yaml(args.config) if args.config else {}
    merged = {**DEFAULTS, **from_yaml, **explicit}
    preset_applied = {}
    if merged["data_path"] is None and merged["embedded_preset"]:
        preset_applied = {k: v for k, v in embedded_preset(merged["model"]).items() if k not in explicit}
        merged.update(preset_applied)

    def origin(key: str) -> str:
        if key in explicit:
            return f"--{key.replace('_', '-')}"
        return f"{args.config}: key {key!r}" if key in from_yaml else f"key {key!r}"

    merged = {k: _check_value(k, v, origin(k)) for k, v in merged.items()}  # one type per key (e.g. 90 -> 90.0)
    _check_merged(merged, origin)
    ns = argparse.Namespace(**merged)
    ns.config = args.config
    ns.preset_applied = preset_applied
    ns.explicit_keys = sorted(explicit)
    if ns.output_dir is None:
        stem = pathlib.Path(args.config).stem if args.config else "cli"
        ns.output_dir = os.path.join("output", "classification", f"{ns.model}__{stem}")
    return ns


_CHOICES = {"amp_dtype": ("float16", "bfloat16"), "clip_mode": ("norm", "value", "agc"),
            "lr_base_scale": ("linear", "sqrt"), "nonfinite": ("skip", "stop"), "bad_images": ("skip", "stop")}


def _check_merged(merged: dict, origin):
    """Value rules that span the merged config; `origin(key)` names where a value came from."""
    for key, (low, high) in LIST_LENGTHS.items():
        value = merged[key]
        if value is not None and not low <= len(value) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise ConfigError(f"{origin(key)} expects {count} numbers, got {value!r}")
    for key, choices in _CHOICES.items():
        if merged[key] not in choices:
            raise ConfigError(f"{origin(key)} must be one of {', '.join(choices)}, got {merged[key]!r}")
    if merged["model"] is None:
        raise ConfigError("no model given: set `model` in the --config YAML or pass --model")
    if merged["mesa"] and not merged["model_ema"]:
        raise ConfigError(f"{origin('mesa')}: mesa > 0 distils from the EMA model: it needs model_ema: true")
    for key in ("accum_iter", "batch_size", "epochs", "nonfinite_limit"):
        if merged[key] < 1:
            raise ConfigError(f"{origin(key)} must be >= 1, got {merged[key]}")
    for key, package in (("log_wandb", "wandb"), ("tensorboard", "tensorboard")):
        if merged[key] and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{origin(key)} needs the `{package}` package (pip install {package})")
    for key in ("aug_repeats", "checkpoint_hist", "save_freq", "save_every_steps"):
        if merged[key] < 0:
            raise ConfigError(f"{origin(key)} must be >= 0, got {merged[key]}")
    if merged["std"] is not None and min(merged["std"]) <= 0:  # the input would be inf / NaN
        raise ConfigError(f"{origin('std')} must be > 0 per channel (inputs are divided by it), got {merged['std']}")
    if merged["save_every_steps"] and merged["use_multi_epochs_loader"]:
        raise ConfigError(f"{origin('save_every_steps')}: a mid-epoch resume skips the batches already done, which "
                          f"timm's MultiEpochsDataLoader cannot (it reads ahead into the next epoch): drop "
                          f"use_multi_epochs_loader")


def save_args_yaml(args: argparse.Namespace, path: str | os.PathLike):
    """Writes every option's resolved value as a config that `--config` accepts back: a rerun with it
    repeats the run (the embedded preset is already folded in, so the file turns it off)."""
    values = {k: getattr(args, k) for k in KEYS}
    values["embedded_preset"] = False
    text = (f"# Resolved configuration of this run (classification/main.py); rerun with --config {path}\n"
            + yaml.safe_dump(values, sort_keys=False, default_flow_style=None))
    with open(path, "w") as f:
        f.write(text)


def args_to_dict(args: argparse.Namespace) -> dict:
    """The resolved configuration as plain JSON-able values (for checkpoints and provenance)."""
    return json.loads(json.dumps(vars(args), default=str))
