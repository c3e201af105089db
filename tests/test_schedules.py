"""Every classification config's learning-rate schedule and EMA decay, replayed for the whole run without
training (classification.optimization.replay: the trainer's own builders and scheduler stepping) on the paper's
8 GPUs x 128 over ImageNet-1K's 1,281,167 training images, against the official schedule:

- PPMA / RMT: the per-epoch train_lr of the official logs (tests/fixtures/ppma_rmt_train_lr.json), every epoch
  to 1e-6 relative;
- P2T, MPViT, PaCa-ViT, Spatial-Mamba: the official trainers' schedules written out below from their code
  (timm's cosine formula, stepped as each official loop steps it), every update to 1e-9 relative.

A short real run then checks that the training loop steps the schedule exactly as the replay does.
"""
from __future__ import annotations

import functools
import json
import math
import pathlib

import numpy as np
import pytest
import timm
import torch.nn as nn
from PIL import Image
from timm.utils import ModelEmaV3

from classification.config import parse_args
from classification.data import paper_updates_per_epoch
from classification.main import main
from classification.optimization import replay

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "classification").glob("*.yaml"))
IMAGENET_TRAIN = 1_281_167
GPUS = 8

# The official runs, from their code (not from our configs). "deit": lr_scheduler.step(epoch) after each epoch
# (DeiT-derived main.py of PPMA/RMT, P2T, MPViT); "timm": step(epoch + 1) (timm's train.py, PaCa-ViT);
# "swin": step_update(epoch * num_steps + idx) after every update, warmup as a prefix (Spatial-Mamba's Swin
# build_scheduler: t_initial = (EPOCHS - WARMUP_EPOCHS) x steps). lr / warmup_lr / min_lr as they enter the
# scheduler at 8 x 128 (PaCa-ViT and Spatial-Mamba scale warmup and min lr by 1024/512 as well).
OFFICIAL = {
    "ppma": dict(stepping="deit", warmup=5, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, ema=0.99996 ** 2),  # PPMA main.py
    "rmt": dict(stepping="deit", warmup=5, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, ema=0.99996 ** 2),
    "p2t": dict(stepping="deit", warmup=20, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, ema=None),  # P2T main.py
    "mpvit": dict(stepping="deit", warmup=5, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, ema=0.99996),  # MPViT main.py
    "pacavit": dict(stepping="timm", warmup=5, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, ema=None),  # imagenet_vit_adamw.yml
    "spatial_mamba": dict(stepping="swin", warmup=20, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, ema=0.9999),  # config.py
}
EPOCHS = 300
# Spatial-Mamba: DistributedSampler (padded: ceil(1281167 / 8) = 160146 per GPU) and a drop_last loader of 128
SWIN_UPDATES_PER_EPOCH = 160146 // 128
# keys that do not enter the schedule: configs that differ only in these share one replay
NOT_SCHEDULE = {"model", "model_kwargs", "drop_path", "mesa", "mesa_start_ratio", "config", "output_dir",
                "find_unused_parameters", "eval_batch_size", "preset_applied", "explicit_keys"}


def _family(stem: str) -> str:
    return next(f for f in ("spatial_mamba", "pacavit", "mpvit", "ppma", "rmt", "p2t") if stem.startswith(f + "_"))


def _paper_args(path: pathlib.Path, *flags: str):
    return parse_args(["--config", str(path), "--data-path", "/imagenet", *flags])  # a data path: no preset


@functools.lru_cache(maxsize=None)
def _replay_cached(key: tuple):
    args = _ARGS[key]
    return replay(args, GPUS, paper_updates_per_epoch(args, GPUS, IMAGENET_TRAIN))


_ARGS: dict = {}


def paper_trace(path: pathlib.Path, *flags: str):
    args = _paper_args(path, *flags)
    key = tuple(sorted((k, repr(v)) for k, v in vars(args).items() if k not in NOT_SCHEDULE))
    _ARGS[key] = args
    return _replay_cached(key)


def official_cosine(t: np.ndarray, lr: float, warmup_lr: float, min_lr: float, warmup_t: float, t_initial: float,
                    prefix: bool) -> np.ndarray:
    """timm's CosineLRScheduler._get_lr (one cycle, k = 1), written out."""
    t = np.asarray(t, dtype=np.float64)
    tc = t - warmup_t if prefix else t
    cos = min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * tc / t_initial))
    return np.where(t < warmup_t, warmup_lr + t * (lr - warmup_lr) / warmup_t, cos)


def official_update_lrs(fam: str, updates_per_epoch: int) -> np.ndarray:
    """The lr of every update of the official run, (EPOCHS, updates_per_epoch)."""
    o = OFFICIAL[fam]
    lrs = dict(lr=o["lr"], warmup_lr=o["warmup_lr"], min_lr=o["min_lr"])
    if o["stepping"] == "swin":
        n = updates_per_epoch
        k = np.arange(EPOCHS * n)
        lr = official_cosine(np.maximum(k - 1, 0), **lrs, warmup_t=o["warmup"] * n,
                             t_initial=(EPOCHS - o["warmup"]) * n, prefix=True)
        return lr.reshape(EPOCHS, n)
    e = np.arange(EPOCHS)
    t = np.maximum(e - 1, 0) if o["stepping"] == "deit" else e
    lr = official_cosine(t, **lrs, warmup_t=o["warmup"], t_initial=EPOCHS, prefix=False)
    return np.repeat(lr[:, None], updates_per_epoch, axis=1)


# ---------------------------------------------------------------------------------------------- replays
@pytest.mark.parametrize("path", [p for p in CONFIGS if _family(p.stem) in ("ppma", "rmt")], ids=lambda p: p.stem)
def test_ppma_rmt_schedule_matches_official_log(path):
    fixture = json.loads((REPO / "tests" / "fixtures" / "ppma_rmt_train_lr.json").read_text())
    want = np.array(fixture["train_lr"])
    trace = paper_trace(path)
    assert trace.num_epochs == len(want) == EPOCHS
    got = np.array(trace.epoch_mean_lr())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    decays = np.array(trace.ema_decay)
    assert decays.shape == (EPOCHS, trace.updates_per_epoch)
    np.testing.assert_allclose(decays, OFFICIAL["ppma"]["ema"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("path", [p for p in CONFIGS if _family(p.stem) not in ("ppma", "rmt")],
                         ids=lambda p: p.stem)
def test_schedule_matches_official_formula(path):
    fam = _family(path.stem)
    trace = paper_trace(path)
    assert trace.num_epochs == EPOCHS
    if OFFICIAL[fam]["stepping"] == "swin":
        assert trace.updates_per_epoch == SWIN_UPDATES_PER_EPOCH
    want = official_update_lrs(fam, trace.updates_per_epoch)
    np.testing.assert_allclose(np.array(trace.lr), want, rtol=1e-9, atol=0)
    if OFFICIAL[fam]["ema"] is None:
        assert trace.ema_decay is None
    else:
        np.testing.assert_allclose(np.array(trace.ema_decay), OFFICIAL[fam]["ema"], rtol=1e-12, atol=0)


def test_no_sched_lag_fixes_the_official_off_by_one():
    """The named fix: --no-sched-lag steps as timm's train.py (epoch e at the lr of e)."""
    path = REPO / "configs" / "classification" / "ppma_tiny.yaml"
    lagged, fixed = paper_trace(path).epoch_mean_lr(), paper_trace(path, "--no-sched-lag").epoch_mean_lr()
    want = official_cosine(np.arange(EPOCHS), 1e-3, 1e-6, 1e-5, 5, EPOCHS, False)
    np.testing.assert_allclose(fixed, want, rtol=1e-9)
    assert lagged[1] == pytest.approx(1e-6) and fixed[1] == pytest.approx(2.008e-4)


@pytest.mark.parametrize("flags, epochs", [
    (["--sched-lag"], 10),  # 9 + 1 cooldown epoch
    (["--sched-on-updates", "--sched-lag", "--warmup-prefix"], 12),  # + 2 prefix warmup epochs
    (["--sched", "step", "--decay-epochs", "3", "--no-sched-lag"], 9),  # timm: no cooldown without cycles
])
def test_resumed_schedule_continues(flags, epochs):
    """A replay started at epoch 4 (the trainer's resume / --start-epoch seek) equals the tail of a full one."""
    args = parse_args(["--model", "p2t_tiny", "--data-path", "/x", "--epochs", "9", "--warmup-epochs", "2",
                       "--cooldown-epochs", "1", *flags])
    full, tail = replay(args, 2, 7), replay(args, 2, 7, start_epoch=4)
    assert full.num_epochs == tail.num_epochs == epochs
    assert tail.lr == full.lr[4:] and len(set(lr for e in full.lr for lr in e)) > 3


# ---------------------------------------------------------------------------------------------- the loop
@timm.models.register_model
def schedule_test_net(pretrained=False, num_classes=1000, **kwargs):
    """A model small enough that a run costs seconds (registered for these tests only)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("sched_data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 1)):
        for c in range(2):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / split / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("flags", [
    ["--sched-lag", "--epochs", "4"],  # DeiT's per-epoch stepping
    ["--sched-on-updates", "--sched-lag", "--warmup-prefix", "--auto-scale-warmup-min-lr", "--epochs", "3",
     "--model-ema", "--model-ema-decay-base-size", "2"],  # Swin's, with a prefix warmup and scaled lrs
], ids=["per-epoch", "per-update"])
def test_training_loop_steps_as_replay(tmp_path, tiny_folder, flags, monkeypatch):
    decays = []
    get_decay = ModelEmaV3.get_decay
    monkeypatch.setattr(ModelEmaV3, "get_decay", lambda self, step=None: decays.append(get_decay(self, step)) or decays[-1])
    common = ["--model", "schedule_test_net", "--data-path", str(tiny_folder), "--input-size", "16",
              "--batch-size", "3", "--num-workers", "0", "--no-pin-mem", "--no-repeated-aug", "--mixup", "0",
              "--cutmix", "0", "--aa", "null", "--reprob", "0", "--warmup-epochs", "2", "--lr-base-size", "4",
              "--print-freq", "1000", *flags]
    main([*common, "--step-log", "--output-dir", str(tmp_path)])
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    trained = list(decays)  # the training's (the replay below records its own)
    trace = replay(parse_args(common), world=1, updates_per_epoch=4)
    assert [s["lr"] for s in steps] == pytest.approx([lr for e in trace.lr for lr in e], rel=1e-12)
    log = [json.loads(line) for line in (tmp_path / "log.txt").read_text().splitlines()]
    assert len(log) == trace.num_epochs
    assert [r["train_lr"] for r in log] == pytest.approx(trace.epoch_mean_lr(), rel=1e-12)
    assert not math.isclose(steps[0]["lr"], steps[-1]["lr"])
    assert trained == ([d for e in trace.ema_decay for d in e] if trace.ema_decay else [])
