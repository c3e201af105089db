"""Classification configs (configs/classification/*.yaml + README table) and the training-log plot tool.

Configs: every YAML goes through the trainer's own loader (classification.config), uses only the shared schema
keys (plus the trainer extras the configs need), names a registered model whose exact parameter count (built
on the meta device) is the one stated in the file's `paper-row` block, states a batch/lr consistent with its
values, holds the key recipe facts of its paper (read in the official code: drop path, EMA, MESA, warmup, clipping,
schedule stepping, loader), cites official repositories (no machine paths), has no NOT EXPRESSIBLE note,
and the README table lists exactly the configs and is up to date.
Plot tool: a synthetic official-format log becomes a PNG; malformed logs fail naming the line.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import re

import pytest
import timm
import torch
import yaml

import models
from classification import config as cls_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CFG_DIR = REPO / "configs" / "classification"
CONFIGS = sorted(CFG_DIR.glob("*.yaml"))
CONFIG_IDS = [p.stem for p in CONFIGS]


def _import_file(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_table = _import_file("cls_make_table", CFG_DIR / "make_table.py")
plot_log = _import_file("plot_training_log", REPO / "figures" / "plot_training_log.py")

# The shared schema (briefs: cls_schema.md), hard-coded so a config cannot drift to a trainer-only key silently.
SCHEMA_KEYS = {
    "model", "model_kwargs", "pretrained", "checkpoint_key", "input_size", "crop_pct", "train_interpolation",
    "eval_interpolation", "batch_size", "accum_iter", "epochs", "drop", "drop_path", "opt", "opt_eps", "opt_betas",
    "momentum", "weight_decay", "clip_grad", "clip_mode", "sched", "lr", "lr_base_size", "warmup_lr", "min_lr",
    "warmup_epochs", "cooldown_epochs", "color_jitter", "aa", "smoothing", "reprob", "remode", "recount",
    "repeated_aug", "mixup", "cutmix", "cutmix_minmax", "mixup_prob", "mixup_switch_prob", "mixup_mode",
    "model_ema", "model_ema_decay", "model_ema_force_cpu", "model_ema_warmup", "mesa", "mesa_start_ratio", "amp",
    "amp_dtype", "sync_bn", "dist_eval", "data_path", "num_workers", "pin_mem", "seed", "output_dir", "resume",
    "eval", "throughput", "save_freq", "tensorboard",
}
# Trainer keys beyond the schema that official recipes need: val batch, RandomResizedCrop scale, DDP flag, and
# how the official loop steps the schedule, scales warmup/min lr and the EMA decay, and loads the data.
EXTRA_KEYS = {"eval_batch_size", "scale", "find_unused_parameters", "sched_on_updates", "sched_lag", "warmup_prefix",
              "lr_base_scale", "auto_scale_warmup_min_lr", "model_ema_decay_base_size", "prefetcher",
              "use_multi_epochs_loader", "channels_last"}
# Data settings that come from the model's pretrained_cfg (timm resolve_data_config), never from a config.
FROM_MODEL = {"crop_pct", "mean", "std", "eval_interpolation"}
OFFICIAL_CROP_PCT = {"pacavit": 0.9}  # PaCa-ViT's timm validate (pretrained_cfg); the others resize 256 -> 224

# Registered names that are aliases of another registered model (no config of their own).
ALIASES = {"pacavit_tiny": "pacavit_tiny_p2cconv_100_0", "pacavit_small": "pacavit_small_p2cconv_100_0",
           "pacavit_base": "pacavit_base_p2cconv_100_0"}

# Recipe facts per config, read in the official code: zhongchenzhao/PPMA classification/main.py (PPMA, RMT),
# yuhuan-wu/P2T main.py, iVMCL/PaCaViT classification/configs/imagenet_vit_adamw.yml + train_timm.sh,
# youngwanLEE/MPViT main.py, EdwardChasel/Spatial-Mamba classification/config.py + configs/spatialmamba/.
_DEIT = dict(batch_size=128, epochs=300, lr=5e-4, lr_base_size=512, weight_decay=0.05, opt="adamw",
             aa="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0, smoothing=0.1, reprob=0.25, input_size=224,
             cooldown_epochs=0, warmup_prefix=False, sched_on_updates=False, sched_lag=True, warmup_lr=1e-6,
             min_lr=1e-5, auto_scale_warmup_min_lr=False, prefetcher=False, use_multi_epochs_loader=False,
             channels_last=False)
_FAMILY = {
    "ppma": dict(_DEIT, model_ema=True, model_ema_decay=0.99996, model_ema_decay_base_size=512, mesa=0.0,
                 warmup_epochs=5, clip_grad=None, repeated_aug=True, eval_batch_size=64),
    "p2t": dict(_DEIT, model_ema=False, mesa=0.0, warmup_epochs=20, clip_grad=None, repeated_aug=True,
                eval_batch_size=192, find_unused_parameters=True),
    "pacavit": dict(_DEIT, model_ema=False, mesa=0.0, warmup_epochs=5, clip_grad=None, sched_lag=False,
                    warmup_lr=5e-7, min_lr=5e-6, auto_scale_warmup_min_lr=True, prefetcher=True,
                    use_multi_epochs_loader=True, channels_last=True, repeated_aug=False),
    "mpvit": dict(_DEIT, model_ema=True, model_ema_decay=0.99996, model_ema_decay_base_size=None, mesa=0.0,
                  warmup_epochs=5, clip_grad=None, repeated_aug=True, find_unused_parameters=True,
                  eval_batch_size=192),
    "spatial_mamba": dict(_DEIT, model_ema=True, model_ema_decay=0.9999, model_ema_decay_base_size=None,
                          mesa_start_ratio=0.25, epochs=280, warmup_epochs=20, warmup_prefix=True,
                          sched_on_updates=True, warmup_lr=5e-7, min_lr=5e-6, auto_scale_warmup_min_lr=True,
                          clip_grad=5.0, clip_mode="norm", repeated_aug=False),
}
_FAMILY["rmt"] = _FAMILY["ppma"]
EXPECTED = {
    "ppma_tiny": dict(drop_path=0.1), "ppma_small": dict(drop_path=0.15), "ppma_base": dict(drop_path=0.4),
    "rmt_tiny": dict(drop_path=0.1), "rmt_small": dict(drop_path=0.15), "rmt_base": dict(drop_path=0.4),
    "p2t_tiny": dict(drop_path=0.1), "p2t_small": dict(drop_path=0.1), "p2t_base": dict(drop_path=0.3),
    "p2t_large": dict(drop_path=0.3),
    "pacavit_tiny_p2cconv_100_0": dict(drop_path=0.1), "pacavit_small_p2cconv_100_0": dict(drop_path=0.1),
    "pacavit_base_p2cconv_100_0": dict(drop_path=0.5), "pacavit_small_p2cmlp_100_0": dict(drop_path=0.1),
    "pacavit_small_p2cconv_2_0": dict(drop_path=0.1), "pacavit_small_p2cconv_49_0": dict(drop_path=0.1),
    "pacavit_small_p2cconv_49_100": dict(drop_path=0.1), "pacavit_small_p2cconv_100_49": dict(drop_path=0.1),
    "pacavit_small_p2cconv_100": dict(drop_path=0.1), "pacavit_small_p2cconv_100_blockwise": dict(drop_path=0.1),
    "pacavit_convmixer_tiny_100": dict(drop_path=0.1), "pacavit_convmixer_small_100": dict(drop_path=0.1),
    "pacavit_convmixer_base_100": dict(drop_path=0.1),
    "mpvit_tiny": dict(drop_path=0.0), "mpvit_xsmall": dict(drop_path=0.0), "mpvit_small": dict(drop_path=0.05),
    "mpvit_base": dict(drop_path=0.3),
    "spatial_mamba_tiny": dict(drop_path=0.2, mesa=1.0), "spatial_mamba_small": dict(drop_path=0.3, mesa=1.5),
    "spatial_mamba_base": dict(drop_path=0.5, mesa=2.0),
}
# Parameter counts of the official code (specs), independent of the configs' own comment blocks.
SPEC_PARAMS = {
    "ppma_tiny": 14_335_272, "ppma_small": 26_969_472, "ppma_base": 54_158_524,
    "rmt_tiny": 14_334_216, "rmt_small": 26_967_240, "rmt_base": 54_154_896,
    "mpvit_tiny": 5_843_736, "mpvit_xsmall": 10_573_448, "mpvit_small": 22_892_400, "mpvit_base": 74_845_976,
    "spatial_mamba_tiny": 26_748_862, "spatial_mamba_small": 43_074_280, "spatial_mamba_base": 95_745_592,
}


OFFICIAL_REPOS = {"ppma": "zhongchenzhao/PPMA", "rmt": "zhongchenzhao/PPMA", "p2t": "yuhuan-wu/P2T",
                  "pacavit": "iVMCL/PaCaViT", "mpvit": "youngwanLEE/MPViT", "spatial_mamba": "EdwardChasel/Spatial-Mamba"}


def _family(model: str) -> str:
    for fam in ("spatial_mamba", "pacavit", "mpvit", "ppma", "rmt", "p2t"):
        if model.startswith(fam + "_"):
            return fam
    raise AssertionError(f"no family for {model}")


def test_one_config_per_row():
    names = {p.stem for p in CONFIGS}
    registered = set(models.list_models())
    assert names == registered - set(ALIASES), "configs and registered (non-alias) models differ"
    assert set(ALIASES.values()) <= names and set(ALIASES) <= registered
    assert set(EXPECTED) == names


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_config_valid(path):
    raw = yaml.safe_load(path.read_text())
    keys = set(raw)
    assert keys <= SCHEMA_KEYS | EXTRA_KEYS, f"{path.name}: keys outside the schema: {keys - SCHEMA_KEYS - EXTRA_KEYS}"
    assert keys <= set(cls_config.KEYS)
    loaded = cls_config.load_yaml(path)  # the trainer's validator: unknown keys and wrong types raise
    assert raw["model"] == path.stem and raw["model"] in models.list_models()
    # full merge as the trainer does it, with a dataset path (no preset) and without (embedded-run preset)
    ns = cls_config.parse_args(["--config", str(path), "--data-path", "/nonexistent/imagenet"])
    for key, value in loaded.items():
        if key != "data_path":
            assert getattr(ns, key) == value, key
    assert ns.preset_applied == {}
    ns_embedded = cls_config.parse_args(["--config", str(path)])
    assert ns_embedded.preset_applied and ns_embedded.model == raw["model"]
    # paper facts
    expected = dict(_FAMILY[_family(raw["model"])], **EXPECTED[raw["model"]])
    for key, value in expected.items():
        assert key in loaded, f"{path.name}: recipe key {key!r} missing"
        assert loaded[key] == pytest.approx(value) if isinstance(value, float) else loaded[key] == value, \
            f"{path.name}: {key} = {loaded[key]!r}, spec says {value!r}"
    if loaded["mesa"]:
        assert loaded["model_ema"]
    assert not keys & FROM_MODEL, f"{path.name}: {keys & FROM_MODEL} come from the model (resolve_data_config)"
    crop = timm.models.get_pretrained_cfg(raw["model"]).crop_pct
    assert crop == OFFICIAL_CROP_PCT.get(_family(raw["model"]), 0.875)


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_comment_block(path):
    fields = make_table.read_paper_row(path)
    cfg = yaml.safe_load(path.read_text())
    gpus = make_table.official_gpus(fields)
    global_batch = gpus * cfg["batch_size"] * cfg.get("accum_iter", 1)
    assert fields["official batch"] == f"{gpus} GPUs x {cfg['batch_size']} = {global_batch}"
    m = re.match(r"^([0-9.e-]+) x (\d+)/(\d+) = ([0-9.e-]+)$", fields["lr"])
    assert m, fields["lr"]
    assert float(m.group(1)) == cfg["lr"] and int(m.group(2)) == global_batch
    assert int(m.group(3)) == cfg["lr_base_size"]
    assert float(m.group(4)) == pytest.approx(cfg["lr"] * global_batch / cfg["lr_base_size"])
    assert fields["top-1"] == "-" or 70.0 < float(fields["top-1"]) < 90.0
    if cfg["model"] in SPEC_PARAMS:
        assert make_table.stated_params(fields) == SPEC_PARAMS[cfg["model"]]
    text = path.read_text()
    assert "NOT EXPRESSIBLE" not in text  # every official behaviour is expressed by keys
    assert "# Departures from the official recipe: none." in text
    comments = [line for line in text.splitlines() if "#" in line]
    # sources are official repositories and files, never paths of this machine
    assert not [c for c in comments if re.search(r"(^|[\s(])/(work|home|mnt|root|tmp)/", c)], path.name
    assert fields["source"].split()[0] in OFFICIAL_REPOS[_family(cfg["model"])]


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_param_count_matches_comment(path):
    cfg = cls_config.load_yaml(path)
    with torch.device("meta"):
        model = timm.create_model(cfg["model"], **(cfg.get("model_kwargs") or {}))
    n = sum(p.numel() for p in model.parameters())
    assert n == make_table.stated_params(make_table.read_paper_row(path)), f"{path.name}: built model has {n:,}"


def test_readme_table_matches_configs():
    readme = (CFG_DIR / "README.md").read_text()
    listed = re.findall(r"^\| \[([^\]]+\.yaml)\]\(\1\) \| `([^`]+)` \|", readme, flags=re.M)
    assert sorted(name for name, _ in listed) == sorted(p.name for p in CONFIGS)
    assert all(name == f"{model}.yaml" for name, model in listed)
    assert len(listed) == len(set(listed))
    assert readme == make_table.render(), "README.md is stale: run python configs/classification/make_table.py"


def test_read_paper_row_rejects_missing_fields(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("# paper-row:\n#   paper: X\n#   top-1: 80.0\nmodel: p2t_tiny\n")
    with pytest.raises(ValueError, match="lacks"):
        make_table.read_paper_row(bad)


# --------------------------------------------------------------------------------------------- plot tool
def _write_log(path, epochs=6, ema=True):
    lines = []
    for e in range(epochs):
        rec = {"epoch": e, "n_parameters": 1234, "train_lr": 1e-3 * (e + 1) / epochs, "train_loss": 2.3 - 0.2 * e,
               "test_loss": 2.2 - 0.2 * e, "test_acc1": 10.0 + 5 * e, "test_acc5": 50.0 + 5 * e}
        if ema:
            rec.update(test_ema_loss=2.25 - 0.2 * e, test_ema_acc1=9.0 + 5 * e, test_ema_acc5=49.0 + 5 * e)
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plot_tool_writes_png(tmp_path):
    a = _write_log(tmp_path / "a_log.txt")
    b = _write_log(tmp_path / "b_log.txt", epochs=4, ema=False)
    records = plot_log.load_log(a)
    assert [r["epoch"] for r in records] == list(range(6)) and records[5]["test_ema_acc1"] == 34.0
    out = tmp_path / "fig" / "curves.png"
    assert plot_log.main([str(a), str(b), "--labels", "A", "B", "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.parametrize("bad_line, message", [
    ("this is not json", r"line 3: not a JSON object"),
    ('{"epoch": 2, "train_lr": 0.1, "train_loss": 1.0, "test_loss": 1.0}', r"line 3: missing key\(s\) \['test_acc1'\]"),
    ('{"epoch": 2, "train_lr": 0.1, "train_loss": "nan?", "test_loss": 1.0, "test_acc1": 3}', r"line 3: key 'train_loss'"),
    ('{"epoch": 1, "train_lr": 0.1, "train_loss": 1.0, "test_loss": 1.0, "test_acc1": 3}', r"line 3: epoch 1 does not"),
    ("[1, 2, 3]", r"line 3: expected a JSON object"),
])
def test_plot_tool_malformed_line(tmp_path, bad_line, message, capsys):
    log = _write_log(tmp_path / "log.txt", epochs=2)
    log.write_text(log.read_text() + bad_line + "\n")
    with pytest.raises(plot_log.LogFormatError, match=message):
        plot_log.load_log(log)
    assert plot_log.main([str(log), "--out", str(tmp_path / "x.png")]) == 2
    assert "line 3" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_plot_tool_rejects_non_log(tmp_path):
    with pytest.raises(plot_log.LogFormatError, match="no such log file"):
        plot_log.load_log(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(plot_log.LogFormatError, match="empty log"):
        plot_log.load_log(empty)


# ----------------------------------------------------------------------------- embedded default dataset
# (classification/embedded_data.py: deterministic, ImageFolder layout, counts as in meta.json, race-safe)
SMALL = {"num_classes": 4, "train_per_class": 3, "val_per_class": 2, "image_size": 32}


def _hashes(root: pathlib.Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_embedded_dataset_deterministic_and_imagefolder(tmp_path):
    import torchvision

    from classification import embedded_data as ed

    a = ed.ensure_embedded_dataset(tmp_path / "a", **SMALL)
    b = ed.ensure_embedded_dataset(tmp_path / "b", **SMALL)
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) == 4 * (3 + 2) + 1 and ha == hb
    assert a.stat().st_mode & 0o755 == 0o755  # shared, not private like a mkdtemp directory
    meta = ed.read_meta(a)
    assert meta["version"] == ed.GENERATOR_VERSION and meta["image_size"] == 32
    assert meta["classes"] == list(ed.CLASS_NAMES[:4])
    for split in ("train", "val"):
        ds = torchvision.datasets.ImageFolder(str(a / split))
        assert ds.classes == meta["classes"]
        counts = dict.fromkeys(ds.classes, 0)
        for _, t in ds.samples:
            counts[ds.classes[t]] += 1
        assert counts == meta["counts"][split]
        img, _ = ds[0]
        assert img.size == (32, 32) and img.mode == "RGB"
    # reused on a second call (meta.json untouched); regenerated when a parameter differs
    mt = (a / "meta.json").stat().st_mtime_ns
    assert ed.ensure_embedded_dataset(a, **SMALL) == a and (a / "meta.json").stat().st_mtime_ns == mt
    ed.ensure_embedded_dataset(a, **dict(SMALL, val_per_class=1))
    assert ed.read_meta(a)["val_per_class"] == 1 and len(list((a / "val").rglob("*.png"))) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directories left behind"


def test_embedded_dataset_images_depend_on_class_and_seed_only():
    import numpy as np

    from classification import embedded_data as ed

    imgs = [ed.generate_image(c, np.random.default_rng([0, 0, c, 0]), 64) for c in range(10)]
    assert all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in imgs)
    assert len({i.tobytes() for i in imgs}) == 10
    assert (ed.generate_image(3, np.random.default_rng([0, 0, 3, 0]), 64) == imgs[3]).all()


def test_embedded_dataset_refuses_foreign_directory(tmp_path):
    from classification import embedded_data as ed

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing"):
        ed.ensure_embedded_dataset(tmp_path / "x", **SMALL)
    assert (tmp_path / "x" / "mine.txt").read_text() == "user data"


def test_embedded_dataset_concurrent_generation(tmp_path):
    import subprocess
    import sys
    import threading

    from classification import embedded_data as ed

    ref = _hashes(ed.ensure_embedded_dataset(tmp_path / "ref", **SMALL))
    # three threads racing on first use
    root, errors = tmp_path / "race", []

    def run():
        try:
            ed.ensure_embedded_dataset(root, **SMALL)
        except (OSError, RuntimeError, ValueError) as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and _hashes(root) == ref
    # two processes racing to replace a stale dataset (other parameters)
    root2 = tmp_path / "race2"
    ed.ensure_embedded_dataset(root2, **dict(SMALL, train_per_class=1))
    code = ("from classification.embedded_data import ensure_embedded_dataset; "
            f"ensure_embedded_dataset({str(root2)!r}, **{SMALL!r})")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO) for _ in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert _hashes(root2) == ref
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race", "race2", "ref"]
