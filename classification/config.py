"""Command line + YAML configuration of the classification trainer.

Every option is one flat key (the argparse destination): ``--warmup-epochs 5`` on the command line is
``warmup_epochs: 5`` in a YAML config (``--warmup_epochs`` is accepted too, as the official scripts spell it).
Precedence: built-in defaults < embedded-run preset (only without ``data_path``) < YAML config < flags.
Exception: the preset is meant to shrink a paper recipe to a few CPU minutes, so it wins over the YAML and
only explicit flags win over it. Unknown keys and flags are errors naming the closest valid key.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import pathlib

import yaml

# (key, type, default, help).  type: one of bool, int, float, str, "list", "dict", "int_or_none", "backend"
# (a string whose flag may stand alone, meaning "inductor").
# A default of None means the key may be null.
OPTIONS: list[tuple[str, object, object, str]] = [
    # model
    ("model", str, None, "timm model name registered by `models` (required)"),
    ("model_kwargs", "dict", None, "extra keyword arguments for timm.create_model (YAML mapping or JSON)"),
    ("pretrained", str, None, "checkpoint to initialise from (official or ours), loaded by the model's loader"),
    ("checkpoint_key", str, None, "container key of --pretrained to load (e.g. model_ema); default: automatic"),
    ("drop", float, 0.0, "dropout rate"),
    ("drop_path", float, None, "stochastic depth rate (null = the model's default)"),
    ("find_unused_parameters", bool, False, "DDP find_unused_parameters"),
    # data
    ("data_path", str, None, "ImageNet-style folder with train/ and val/ (null = embedded default dataset)"),
    ("input_size", int, 224, "square train/eval resolution"),
    ("crop_pct", float, 0.875, "eval centre-crop fraction (resize to input_size / crop_pct, then crop)"),
    ("train_interpolation", str, "bicubic", "train resize interpolation"),
    ("eval_interpolation", str, "bicubic", "eval resize interpolation"),
    ("scale", "list", [0.08, 1.0], "RandomResizedCrop area range"),
    ("no_aug", bool, False, "train transform = eval transform (no random crop/flip/RandAugment/erasing)"),
    ("batch_size", int, 64, "batch size PER PROCESS"),
    ("eval_batch_size", int, None, "eval batch size per process (null = batch_size)"),
    ("num_workers", int, 8, "data loader workers per process"),
    ("pin_mem", bool, True, "pin memory in the data loaders"),
    ("repeated_aug", bool, True, "repeated augmentation (timm RepeatAugSampler, 3 repeats)"),
    # optimisation
    ("epochs", int, 300, "training epochs"),
    ("accum_iter", int, 1, "gradient accumulation steps"),
    ("opt", str, "adamw", "timm optimizer name"),
    ("opt_eps", float, 1e-8, "optimizer epsilon"),
    ("opt_betas", "list", None, "optimizer betas (null = optimizer default)"),
    ("momentum", float, 0.9, "SGD momentum"),
    ("weight_decay", float, 0.05, "weight decay (timm skips 1-D params, biases and no_weight_decay())"),
    ("clip_grad", float, None, "gradient clipping threshold (null = off)"),
    ("clip_mode", str, "norm", "gradient clipping mode: norm, value or agc"),
    ("sched", str, "cosine", "timm scheduler name, stepped every optimizer update"),
    ("lr", float, 5e-4, "base learning rate"),
    ("lr_base_size", "int_or_none", 512, "lr used = lr * global_batch / lr_base_size (null = lr as given)"),
    ("warmup_lr", float, 1e-6, "warmup start lr"),
    ("min_lr", float, 1e-5, "lower lr bound of the schedule"),
    ("warmup_epochs", float, 5, "warmup epochs"),
    ("cooldown_epochs", float, 10, "cooldown epochs after `epochs` (only reached if epochs is raised)"),
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
    ("model_ema_force_cpu", bool, False, "keep the EMA on the CPU"),
    ("model_ema_warmup", bool, False, "EMA decay warmup (timm ModelEmaV3 use_warmup)"),
    ("mesa", float, 0.0, "MESA self-distillation weight (EMA teacher; 0 = off)"),
    ("mesa_start_ratio", float, 0.25, "fraction of training after which MESA starts"),
    # precision and devices
    ("amp", bool, False, "mixed precision (CUDA: fp16/bf16; CPU: bf16 only, fp16 falls back to fp32)"),
    ("amp_dtype", str, "float16", "float16 or bfloat16"),
    ("sync_bn", bool, False, "SyncBatchNorm (CUDA multi-process only; BN with broadcast buffers otherwise)"),
    ("dist_eval", bool, False, "split the validation set over processes (exact: no padding)"),
    ("device", str, None, "cuda, cpu, ... (null = CUDA if available)"),
    ("channels_last", bool, False, "channels_last memory format for the model and its input batches"),
    ("torchcompile", "backend", None, "torch.compile the training model with this backend (flag alone: "
     "inductor; null = eager), as timm's --torchcompile"),
    # run control
    ("seed", int, 0, "random seed (data randomness uses seed + rank)"),
    ("output_dir", str, None, "where log.txt and checkpoints go (null = output/classification/<model>__<config>)"),
    ("resume", str, None, "checkpoint to resume from ('auto' = <output_dir>/checkpoint.pth if present)"),
    ("eval", bool, False, "only evaluate (--pretrained or --resume) and exit"),
    ("throughput", bool, False, "only measure inference throughput and exit"),
    ("save_freq", int, 0, "also keep checkpoint-<epoch>.pth every N epochs (0 = only checkpoint.pth, best.pth)"),
    ("tensorboard", bool, False, "write TensorBoard scalars to <output_dir>/tb"),
    ("print_freq", int, 10, "console progress line every N iterations"),
    ("step_log", bool, False, "also write <output_dir>/steps.jsonl: the global loss and lr of every update"),
    ("max_epochs_this_run", int, None, "stop after this many epochs in this invocation (then --resume goes on)"),
]

OPTION_TYPES = {k: t for k, t, _, _ in OPTIONS}
DEFAULTS = {k: d for k, _, d, _ in OPTIONS}
KEYS = tuple(DEFAULTS)

# Embedded-run preset: shrinks any paper recipe to a few minutes on 2 CPU cores (2 processes x 1 thread)
# on the embedded default dataset (10 classes, 1,600 train / 400 val images, 64 px).  Light augmentation
# and a high, unscaled lr so a transformer trained from scratch learns something in ~20 epochs; EMA (when
# the recipe has one) with a short horizon; MESA keeps the recipe's weight and start ratio.
EMBEDDED_PRESET: dict[str, object] = dict(
    input_size=48, crop_pct=0.875, batch_size=16, eval_batch_size=100, accum_iter=1, epochs=12,
    lr=1e-3, lr_base_size=None, warmup_lr=1e-5, min_lr=1e-5, warmup_epochs=2, cooldown_epochs=0,
    drop_path=0.0, aa=None, scale=[0.35, 1.0], reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.1,
    repeated_aug=False, model_ema_decay=0.99, model_ema_warmup=True,
    num_workers=0, pin_mem=False, dist_eval=True, sync_bn=False, save_freq=0, weight_decay=0.05,
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


def _parse_mapping(text: str):
    value = yaml.safe_load(text)
    if value is not None and not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping (YAML/JSON), got {text!r}")
    return value


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
        elif typ == "dict":
            parser.add_argument(*flags, dest=key, type=_parse_mapping, help=help_text, **kw)
        elif typ == "int_or_none":
            parser.add_argument(*flags, dest=key, type=_nullable(int), help=help_text, **kw)
        elif typ == "backend":
            parser.add_argument(*flags, dest=key, nargs="?", const="inductor", type=_nullable(str),
                                help=help_text, **kw)
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
    elif typ == "list":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
        value = [float(v) for v in value] if ok else value
    else:  # dict
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
    explicit = vars(build_parser(suppress_defaults=True).parse_args(argv))
    merged = dict(DEFAULTS)
    from_yaml = load_yaml(args.config) if args.config else {}
    merged.update(from_yaml)
    merged.update({k: v for k, v in explicit.items() if k != "config"})
    preset_applied = {}
    if merged["data_path"] is None:
        for key, value in embedded_preset(merged["model"]).items():
            if key not in explicit:
                preset_applied[key] = value
        merged.update(preset_applied)
    for key in ("scale", "opt_betas", "cutmix_minmax"):
        if merged[key] is not None and len(merged[key]) != 2:
            raise ConfigError(f"key {key!r} expects two numbers, got {merged[key]!r}")
    if merged["model"] is None:
        raise ConfigError("no model given: set `model` in the --config YAML or pass --model")
    if merged["amp_dtype"] not in ("float16", "bfloat16"):
        raise ConfigError(f"amp_dtype must be float16 or bfloat16, got {merged['amp_dtype']!r}")
    if merged["clip_mode"] not in ("norm", "value", "agc"):
        raise ConfigError(f"clip_mode must be norm, value or agc, got {merged['clip_mode']!r}")
    if merged["mesa"] and not merged["model_ema"]:
        raise ConfigError("mesa > 0 distils from the EMA model: it needs model_ema: true")
    if merged["accum_iter"] < 1 or merged["batch_size"] < 1:
        raise ConfigError("batch_size and accum_iter must be >= 1")
    ns = argparse.Namespace(**merged)
    ns.config = args.config
    ns.preset_applied = preset_applied
    ns.explicit_keys = sorted(k for k in explicit if k != "config")
    if ns.output_dir is None:
        stem = pathlib.Path(args.config).stem if args.config else "cli"
        ns.output_dir = os.path.join("output", "classification", f"{ns.model}__{stem}")
    return ns


def args_to_dict(args: argparse.Namespace) -> dict:
    """The resolved configuration as plain JSON-able values (for checkpoints and provenance)."""
    return json.loads(json.dumps(vars(args), default=str))
