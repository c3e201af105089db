"""Classification trainer (classification/main.py): config handling, short runs per family, exact resume,
2-process gloo == 1 process, checkpoints (atomic, loadable by the model's loader), log format."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
from timm.utils import random_seed
import torch
from PIL import Image

import models  # noqa: F401
from classification import utils as cls_utils
from classification.config import EMBEDDED_PRESET, ConfigError, parse_args
from classification.main import LOG_KEYS, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL_KEYS = ["epoch", "n_parameters", "train_lr", "train_loss", "test_loss", "test_acc1", "test_acc5"]
EMA_KEYS = ["test_ema_loss", "test_ema_acc1", "test_ema_acc5"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """4 classes (colour + stripe orientation), 8 train / 3 val images each, 40 px PNGs."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c in range(4):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, size=(40, 40, 3), dtype=np.uint8)
                img[:, :, c % 3] += 120
                if c >= 2:
                    img[::4] = 255
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def run_main(*args):
    return main([str(a) for a in args])


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


BASE = ["--batch-size", 4, "--eval-batch-size", 6, "--num-workers", 0, "--no-pin-mem", "--print-freq", 100,
        "--lr", 1e-3, "--lr-base-size", "null", "--warmup-epochs", 1, "--cooldown-epochs", 0, "--sched-on-updates"]


# ---------------------------------------------------------------------------------------------- config
def test_config_precedence_and_preset(tmp_path):
    cfg = tmp_path / "p2t_tiny.yaml"
    cfg.write_text("model: p2t_tiny\nlr: 0.0005\nbatch_size: 128\nepochs: 300\nmodel_ema: true\n"
                   "opt_betas: [0.9, 0.99]\ndata_path: /imagenet\n")
    args = parse_args(["--config", str(cfg), "--lr", "2e-3", "--warmup_epochs", "7"])
    assert (args.lr, args.batch_size, args.epochs, args.warmup_epochs) == (2e-3, 128, 300, 7)
    assert args.model_ema is True and args.opt_betas == [0.9, 0.99] and args.preset_applied == {}
    assert args.output_dir == os.path.join("output", "classification", "p2t_tiny__p2t_tiny")
    # no data_path: the embedded preset overrides the YAML recipe, explicit flags override the preset
    cfg.write_text("model: p2t_tiny\nbatch_size: 128\nepochs: 300\naa: rand-m9-mstd0.5-inc1\n")
    args = parse_args(["--config", str(cfg), "--epochs", "3"])
    assert args.epochs == 3 and args.batch_size == EMBEDDED_PRESET["batch_size"] != 128 and args.aa is None
    assert args.input_size == 72  # P2T's own minimum in the preset
    assert "epochs" not in args.preset_applied and args.preset_applied["batch_size"] == args.batch_size


def test_unknown_keys_and_bad_values_fail_clearly(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: p2t_tiny\nwarmup_epoch: 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'warmup_epoch'.*did you mean 'warmup_epochs'"):
        parse_args(["--config", str(cfg)])
    cfg.write_text("model: p2t_tiny\nlr: fast\n")
    with pytest.raises(ConfigError, match=r"'lr' expects float"):
        parse_args(["--config", str(cfg)])
    with pytest.raises(ConfigError, match="config file not found"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(SystemExit) as exc:
        parse_args(["--model", "p2t_tiny", "--warmup-epoch", "5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown option(s): --warmup-epoch 5" in err and "did you mean 'warmup_epochs'" in err
    # boolean flags: --x / --no-x, also for a key that itself starts with "no_"
    args = parse_args(["--model", "p2t_tiny", "--no-aug", "--no-pin-mem", "--model-ema", "--no_repeated_aug"])
    assert (args.no_aug, args.pin_mem, args.model_ema, args.repeated_aug) == (True, False, True, False)
    with pytest.raises(ConfigError, match="no model given"):
        parse_args([])
    with pytest.raises(ConfigError, match="needs model_ema"):
        parse_args(["--model", "p2t_tiny", "--mesa", "1.0"])


def test_missing_data_path_and_unknown_model(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        run_main("--model", "mpvit_tiny", "--data-path", tmp_path / "nowhere")
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="missing the val/ folder"):
        run_main("--model", "mpvit_tiny", "--data-path", tmp_path / "half")
    with pytest.raises(ConfigError, match="unknown model 'mpvit_tinyy'.*mpvit_tiny"):
        run_main("--model", "mpvit_tinyy", "--data-path", image_folder, "--output-dir", tmp_path / "o")
    # the command line reports these as one clear line, exit status 2
    proc = subprocess.run([sys.executable, "classification/main.py", "--model", "mpvit_tiny", "--data-path",
                           str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "error: --data-path" in proc.stderr and "no such directory" in proc.stderr


def test_atomic_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    cls_utils.save_atomic({"epoch": 1}, str(path))

    def crash(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        cls_utils.save_atomic({"epoch": 2}, str(path))
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_rng_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    random_seed(3)
    state = cls_utils.get_rng_state()
    cls_utils.save_atomic({"rng": [state]}, str(tmp_path / "r.pth"))
    want = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    random_seed(99)
    cls_utils.set_rng_state(cls_utils.load_checkpoint_file(str(tmp_path / "r.pth"))["rng"][0])
    assert (np.random.rand(), torch.rand(1).item(), __import__("random").random()) == want


# ---------------------------------------------------------------------------------------------- runs
FAMILIES = [("mpvit_tiny", 32), ("pacavit_tiny", 32), ("ppma_tiny", 32), ("p2t_tiny", 72),
            ("spatial_mamba_tiny", 32)]


@pytest.mark.parametrize("model,size", FAMILIES)
def test_short_run_per_family(tmp_path, image_folder, model, size):
    """One epoch (8 updates) with the paper-style recipe pieces on: RandAugment, mixup/cutmix, erasing, EMA."""
    out = tmp_path / "out"
    res = run_main("--model", model, "--data-path", image_folder, "--input-size", size, "--epochs", 1,
                   "--output-dir", out, *BASE, "--model-ema", "--model-ema-decay", 0.9, "--drop-path", 0.1,
                   "--clip-grad", 5.0, "--no-repeated-aug")
    log = read_log(out / "log.txt")
    assert len(log) == 1 and list(log[0]) == OFFICIAL_KEYS + EMA_KEYS
    n_params = sum(p.numel() for p in timm.create_model(model, num_classes=4).parameters())
    assert log[0]["n_parameters"] == n_params and log[0]["epoch"] == 0
    assert np.isfinite(log[0]["train_loss"]) and 0 <= log[0]["test_acc1"] <= 100
    assert res["best"]["metric"] == "test_ema_acc1"
    assert sorted(p.name for p in out.iterdir()) == ["args.yaml", "best.pth", "checkpoint.pth", "log.txt",
                                                    "provenance.json", "summary.csv"]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command"].startswith("python") and prov["torch"] == torch.__version__


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, image_folder):
    """3 epochs straight == 2 epochs, stop, --resume auto for the 3rd (augmentation, mixup, EMA, MESA on)."""
    common = ["--model", "mpvit_tiny", "--data-path", image_folder, "--input-size", 32, "--epochs", 3, *BASE,
              "--aa", "rand-m9-mstd0.5-inc1", "--reprob", 0.25, "--mixup", 0.8, "--cutmix", 1.0,
              "--model-ema", "--model-ema-decay", 0.9, "--mesa", 1.0, "--mesa-start-ratio", 0.3,
              "--drop-path", 0.1, "--repeated-aug", "--step-log", "--batch-size", 8]
    run_main(*common, "--output-dir", tmp_path / "a")
    run_main(*common, "--output-dir", tmp_path / "b", "--max-epochs-this-run", 2)
    assert len(read_log(tmp_path / "b" / "log.txt")) == 2
    run_main(*common, "--output-dir", tmp_path / "b", "--resume", "auto")
    a, b = read_log(tmp_path / "a" / "log.txt"), read_log(tmp_path / "b" / "log.txt")
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        for k in LOG_KEYS:
            assert x[k] == pytest.approx(y[k], abs=1e-6, rel=1e-6), k
    sa, sb = read_log(tmp_path / "a" / "steps.jsonl"), read_log(tmp_path / "b" / "steps.jsonl")
    assert [s["update"] for s in sa] == [s["update"] for s in sb] == list(range(1, 3 * 4 + 1))
    for x, y in zip(sa, sb):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6) and x["lr"] == pytest.approx(y["lr"], rel=1e-9)
    assert (tmp_path / "b" / "provenance-resume-2.json").is_file()
    # the checkpoint holds everything the brief lists, under weights_only loading
    ckpt = cls_utils.load_checkpoint_file(str(tmp_path / "b" / "checkpoint.pth"))
    assert {"model", "model_ema", "optimizer", "lr_scheduler", "scaler", "epoch", "args", "rng", "best"} <= set(ckpt)
    assert not any(k.startswith("module.") for k in ckpt["model"]) and ckpt["epoch"] == 2

    # --eval of our checkpoint reproduces the last epoch's numbers; best.pth loads through the model's loader
    stats = run_main("--model", "mpvit_tiny", "--data-path", image_folder, "--input-size", 32, *BASE,
                     "--model-ema", "--eval", "--resume", tmp_path / "a" / "checkpoint.pth")
    for k in ("test_acc1", "test_loss", "test_ema_acc1", "test_ema_loss"):
        assert stats[k] == pytest.approx(a[-1][k], abs=1e-5), k
    best = tmp_path / "a" / "best.pth"
    # (timm: a head for other than the cfg's 1000 classes loads when the overlay states num_classes)
    net = timm.create_model("mpvit_tiny", num_classes=4, pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(best), num_classes=4))
    ema = timm.create_model("mpvit_tiny", num_classes=4, pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(best), checkpoint_key="model_ema", num_classes=4))
    raw = torch.load(best, weights_only=True)
    assert all(torch.equal(v, raw["model"][k]) for k, v in net.state_dict().items())
    assert all(torch.equal(v, raw["model_ema"][k]) for k, v in ema.state_dict().items())
    stats = run_main("--model", "mpvit_tiny", "--data-path", image_folder, "--input-size", 32, *BASE,
                     "--eval", "--pretrained", best, "--checkpoint-key", "model_ema")
    best_epoch = raw["best"]["epoch"]
    assert stats["test_acc1"] == pytest.approx(a[best_epoch]["test_ema_acc1"], abs=1e-5)


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path, image_folder):
    """torchrun 2 x gloo with batch 4 == 1 process with batch 8 == 1 process with batch 4 x 2 accumulation
    steps: the same per-update losses and final weights."""
    common = ["--model", "pacavit_tiny", "--data-path", str(image_folder), "--input-size", "32", "--epochs", "2",
              "--num-workers", "0", "--no-pin-mem", "--lr", "1e-3", "--lr-base-size", "8", "--warmup-epochs", "1",
              "--cooldown-epochs", "0", "--sched-on-updates", "--no-aug", "--mixup", "0", "--cutmix", "0", "--reprob", "0",
              "--drop-path", "0", "--no-repeated-aug", "--smoothing", "0.1", "--step-log", "--dist-eval",
              "--eval-batch-size", "5", "--print-freq", "100"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(["torchrun", "--nproc_per_node=2", "--master_port=29517", "classification/main.py",
                           *common, "--batch-size", "4", "--output-dir", str(tmp_path / "two")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    main([*common, "--batch-size", "8", "--output-dir", str(tmp_path / "one")])
    main([*common, "--batch-size", "4", "--accum-iter", "2", "--output-dir", str(tmp_path / "accum")])
    s1, s2 = read_log(tmp_path / "one" / "steps.jsonl"), read_log(tmp_path / "two" / "steps.jsonl")
    s3 = read_log(tmp_path / "accum" / "steps.jsonl")
    assert len(s1) == len(s2) == len(s3) == 8
    for x, y, z in zip(s1, s2, s3):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-9) and x["lr"] == pytest.approx(z["lr"], rel=1e-9)
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5) and x["loss"] == pytest.approx(z["loss"], abs=1e-5)
    l1, l2 = read_log(tmp_path / "one" / "log.txt"), read_log(tmp_path / "two" / "log.txt")
    for x, y in zip(l1, l2):
        for k in ("train_loss", "test_loss", "test_acc1", "test_acc5"):
            assert x[k] == pytest.approx(y[k], abs=1e-4), k
    w1 = torch.load(tmp_path / "one" / "checkpoint.pth", weights_only=True)["model"]
    w2 = torch.load(tmp_path / "two" / "checkpoint.pth", weights_only=True)["model"]
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    prov = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert prov["command"].startswith("torchrun --nproc_per_node=2 ") and prov["machine"]["world_size"] == 2


def test_throughput_mode(capsys):
    res = run_main("--model", "mpvit_tiny", "--throughput", "--batch-size", 2, "--input-size", 32)
    assert res["throughput"] > 0
    assert '"throughput_img_s"' in capsys.readouterr().out
