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
                                                    "provenance.json", "run.lock", "summary.csv"]
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
    out = capsys.readouterr().out
    assert '"throughput_img_s"' in out and "CPU allocator: " in out


# ---------------------------------------------------------------------------------------------- timm-style options
@timm.models.register_model
def cls_test_net(pretrained=False, num_classes=1000, **kwargs):
    """A model whose runs cost seconds (registered for these tests only)."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, num_classes))


TINY = ["--model", "cls_test_net", "--input-size", 24, *BASE, "--no-repeated-aug", "--aa", "null"]


def test_model_kwargs_key_value_and_mapping():
    args = parse_args(["--model", "p2t_tiny", "--model-kwargs", "depth=3", "dims=[8, 16]", "act=gelu", "{x: 1.5}"])
    assert args.model_kwargs == {"depth": 3, "dims": [8, 16], "act": "gelu", "x": 1.5}
    with pytest.raises(SystemExit):
        parse_args(["--model", "p2t_tiny", "--model-kwargs", "[1, 2]"])


def test_args_yaml_round_trip_and_summary_csv(tmp_path, image_folder):
    """args.yaml reproduces the run through --config; summary.csv holds log.txt's numbers in timm's columns."""
    run_main(*TINY, "--data-path", image_folder, "--epochs", 2, "--mixup", 0.5, "--model-kwargs", "pretrained_cfg=null",
             "--output-dir", tmp_path / "a")
    run_main("--config", tmp_path / "a" / "args.yaml", "--output-dir", tmp_path / "b")
    a, b = read_log(tmp_path / "a" / "log.txt"), read_log(tmp_path / "b" / "log.txt")
    assert len(a) == 2 and a == b
    cfg_a = (tmp_path / "a" / "args.yaml").read_text().replace(str(tmp_path / "a"), "X")
    assert cfg_a == (tmp_path / "b" / "args.yaml").read_text().replace(str(tmp_path / "b"), "X")
    import csv

    rows = list(csv.DictReader(open(tmp_path / "a" / "summary.csv")))
    assert list(rows[0]) == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]
    for row, rec in zip(rows, a):
        assert int(row["epoch"]) == rec["epoch"] and float(row["eval_top1"]) == pytest.approx(rec["test_acc1"])
        assert float(row["lr"]) == pytest.approx(rec["train_lr"]) and float(row["train_loss"]) == pytest.approx(rec["train_loss"])


def test_args_yaml_keeps_a_preset_run_as_run(tmp_path):
    """Without data_path the preset is folded into args.yaml, which turns it off: explicit flags survive."""
    from classification.config import KEYS, save_args_yaml

    args = parse_args(["--config", os.path.join(REPO, "configs", "classification", "ppma_tiny.yaml"), "--epochs", "3"])
    save_args_yaml(args, tmp_path / "args.yaml")
    again = parse_args(["--config", str(tmp_path / "args.yaml")])
    assert again.preset_applied == {} and again.epochs == 3 and again.batch_size == EMBEDDED_PRESET["batch_size"]
    assert all(getattr(again, k) == getattr(args, k) for k in KEYS if k != "embedded_preset")


def test_checkpoint_hist_keeps_top_k_across_resume(tmp_path, image_folder, monkeypatch):
    """--checkpoint-hist 2 keeps the two best epochs by the eval metric (ties: the older), also after a resume."""
    import classification.main as cls_main

    acc = iter([10.0, 40.0, 20.0, 30.0, 30.0, 50.0])
    monkeypatch.setattr(cls_main, "evaluate_all", lambda *a, **k: {"test_loss": 1.0, "test_acc1": next(acc),
                                                                    "test_acc5": 100.0})
    common = [*TINY, "--data-path", image_folder, "--checkpoint-hist", 2, "--output-dir", tmp_path]
    run_main(*common, "--epochs", 4)
    kept = sorted(p.name for p in tmp_path.glob("checkpoint-*.pth"))
    assert kept == ["checkpoint-1.pth", "checkpoint-3.pth"]
    assert torch.load(tmp_path / "checkpoint-3.pth", weights_only=True)["epoch"] == 3
    run_main(*common, "--epochs", 6, "--resume", "auto", "--max-epochs-this-run", 1)  # 30 ties epoch 3's
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pth")) == ["checkpoint-1.pth", "checkpoint-3.pth"]
    run_main(*common, "--epochs", 6, "--resume", "auto")  # epoch 5: 50
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pth")) == ["checkpoint-1.pth", "checkpoint-5.pth"]
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert ckpt["checkpoint_hist"] == [[50.0, 5], [40.0, 1]] and ckpt["best"]["epoch"] == 5


def test_no_resume_opt_and_start_epoch(tmp_path, image_folder):
    common = [*TINY, "--data-path", image_folder, "--epochs", 4]
    run_main(*common, "--max-epochs-this-run", 2, "--output-dir", tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoint.pth"
    run_main(*common, "--resume", ckpt, "--output-dir", tmp_path / "full")
    run_main(*common, "--resume", ckpt, "--no-resume-opt", "--output-dir", tmp_path / "weights")
    run_main(*common, "--resume", ckpt, "--start-epoch", 3, "--output-dir", tmp_path / "late")

    def adam_steps(out):
        state = torch.load(out / "checkpoint.pth", weights_only=True)["optimizer"]["state"]
        return {int(s["step"]) for s in state.values()}

    assert adam_steps(tmp_path / "full") == {4 * 8} and adam_steps(tmp_path / "weights") == {2 * 8}
    assert adam_steps(tmp_path / "late") == {3 * 8}
    assert [r["epoch"] for r in read_log(tmp_path / "late" / "log.txt")] == [3]
    # the schedule follows the start epoch: the same lr as the uninterrupted run's last epoch
    full, late = read_log(tmp_path / "full" / "log.txt"), read_log(tmp_path / "late" / "log.txt")
    assert late[0]["train_lr"] == pytest.approx(full[-1]["train_lr"], rel=1e-12)
    assert read_log(tmp_path / "weights" / "log.txt")[0]["train_lr"] == pytest.approx(full[0]["train_lr"], rel=1e-12)


def test_grad_checkpointing_and_aug_repeats():
    from timm.data.distributed_sampler import RepeatAugSampler

    from classification.data import train_sampler
    from classification.main import Context, prepare_model

    args = parse_args(["--model", "mpvit_tiny", "--grad-checkpointing", "--data-path", "/x"])
    model = prepare_model(Context(args, torch.device("cpu"), 0, 1), timm.create_model("mpvit_tiny"))
    flags = [m.grad_checkpointing for m in model.modules() if hasattr(m, "grad_checkpointing")]
    assert flags and all(f is True for f in flags)
    args = parse_args(["--model", "mpvit_tiny", "--grad-checkpointing", "selective", "--data-path", "/x"])
    model = prepare_model(Context(args, torch.device("cpu"), 0, 1), timm.create_model("mpvit_tiny"))
    assert {m.grad_checkpointing for m in model.modules() if hasattr(m, "grad_checkpointing")} == {"selective"}
    for bad in (["--grad-checkpointing", "full"], ["--no-grad-checkpointing", "selective"]):
        with pytest.raises(SystemExit):
            parse_args(["--model", "mpvit_tiny", "--data-path", "/x", *bad])
    tiny = parse_args(["--model", "cls_test_net", "--grad-checkpointing", "--data-path", "/x"])
    with pytest.raises(ConfigError, match="cls_test_net has no set_grad_checkpointing"):
        prepare_model(Context(tiny, torch.device("cpu"), 0, 1), timm.create_model("cls_test_net"))
    for flags, repeats in ((["--repeated-aug"], 3), (["--no-repeated-aug", "--aug-repeats", "2"], 2)):
        sampler = train_sampler(parse_args(["--model", "p2t_tiny", "--data-path", "/x", *flags]), range(100), 1, 4)
        assert isinstance(sampler, RepeatAugSampler) and sampler.num_repeats == repeats
    assert not isinstance(train_sampler(parse_args(["--model", "p2t_tiny", "--data-path", "/x", "--no-repeated-aug"]),
                                        range(100), 1, 4), RepeatAugSampler)


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is not None, reason="wandb installed")
def test_log_wandb_needs_the_package():
    with pytest.raises(ConfigError, match=r"--log-wandb needs the `wandb` package"):
        parse_args(["--model", "p2t_tiny", "--log-wandb"])


def test_tar_dataset_class_map_and_splits(tmp_path, image_folder):
    """timm create_dataset: tar splits, a class map (its order gives the labels), split names; missing ones named."""
    import tarfile

    from classification.data import build_datasets, class_to_idx, dataset_root

    for split in ("train", "val"):
        with tarfile.open(tmp_path / f"{split}.tar", "w") as tar:
            tar.add(image_folder / split, arcname=".")
    (tmp_path / "classes.txt").write_text("class3\nclass2\nclass1\nclass0\n")
    args = parse_args(["--model", "p2t_tiny", "--data-path", str(tmp_path), "--train-split", "train.tar",
                       "--val-split", "val.tar", "--class-map", str(tmp_path / "classes.txt")])
    train, val = build_datasets(args, dataset_root(args, 0), need_train=True)
    assert (len(train), len(val)) == (32, 12)
    assert class_to_idx(val) == {"class3": 0, "class2": 1, "class1": 2, "class0": 3}
    labels = {(os.path.basename(os.path.dirname(f)), val.reader[i][1]) for i, f in enumerate(val.filenames())}
    assert labels == {("class3", 0), ("class2", 1), ("class1", 2), ("class0", 3)}
    args = parse_args(["--model", "p2t_tiny", "--data-path", str(tmp_path), "--train-split", "train.tar",
                       "--val-split", "validation"])
    with pytest.raises(FileNotFoundError, match=r"missing the validation/ folder"):
        dataset_root(args, 0)


def test_prefetcher_multi_epoch_loader_channels_last(tmp_path, image_folder):
    """timm's PrefetchLoader (normalisation and erasing on the device, FastCollateMixup) and MultiEpochsDataLoader."""
    from timm.data.loader import MultiEpochsDataLoader, PrefetchLoader

    from classification import data as cls_data

    res = run_main(*TINY, "--data-path", image_folder, "--epochs", 2, "--prefetcher", "--use-multi-epochs-loader",
                   "--channels-last", "--mixup", 0.8, "--reprob", 0.5, "--num-workers", 1, "--output-dir", tmp_path)
    log = read_log(tmp_path / "log.txt")
    assert len(log) == 2 and all(np.isfinite(r["train_loss"]) for r in log) and res["best"]["epoch"] >= 0
    args = parse_args([*map(str, TINY), "--data-path", str(image_folder), "--prefetcher", "--use-multi-epochs-loader"])
    train, val = cls_data.build_datasets(args, image_folder, need_train=True)
    model = timm.create_model("cls_test_net", num_classes=4)
    cfg = cls_data.data_config(args, model)
    cls_data.set_transforms(args, cfg, train, val)
    loaders, mixup_fn = cls_data.build_loaders(args, cfg, train, val, 0, 1, torch.device("cpu"), 4)
    assert isinstance(loaders["train"], PrefetchLoader) and isinstance(loaders["train"].loader, MultiEpochsDataLoader)
    images, targets = next(iter(loaders["val"]))
    assert images.dtype == torch.float32 and abs(images.mean().item()) < 3 and targets.dtype == torch.int64
    images, targets = next(iter(loaders["train"]))
    assert mixup_fn is None and targets.shape == (4, 4)  # mixed soft targets from the collate


# ---------------------------------------------------------------------------------------------- validate.py
@pytest.fixture(scope="module")
def imagenet_named_val(tmp_path_factory, image_folder):
    """The val images under ImageNet's file names (ILSVRC2012_val_<n>.JPEG), as ReaL labels index them."""
    import shutil

    root = tmp_path_factory.mktemp("real")
    n = 0
    for d in sorted((image_folder / "val").iterdir()):
        (root / "val" / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir()):
            n += 1
            shutil.copy(f, root / "val" / d.name / f"ILSVRC2012_val_{n:08d}.JPEG")
    return root


def _save_ours(path, model: dict, ema: dict | None = None):
    torch.save({"model": model, "model_ema": ema, "epoch": 0}, path)


def _weights(model: str, seed: int) -> dict:
    torch.manual_seed(seed)
    return timm.create_model(model, num_classes=4).state_dict()


def test_validate_many_checkpoints_results_files(tmp_path, imagenet_named_val):
    from classification import validate

    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    wa, wb = _weights("mpvit_tiny", 0), _weights("mpvit_tiny", 1)
    _save_ours(ckpts / "a.pth", wa, ema=wb)
    _save_ours(ckpts / "b.pth", wb)
    common = ["--model", "mpvit_tiny", "--data-path", str(imagenet_named_val), "--img-size", "32", "--workers", "0"]
    res = validate.main([*common, "--checkpoint", str(ckpts), "--results-file", str(tmp_path / "r.csv")])
    assert [os.path.basename(r["checkpoint"]) for r in res] == ["a.pth", "b.pth"]
    # the same numbers as the trainer's --eval of the same file
    stats = run_main("--model", "mpvit_tiny", "--data-path", imagenet_named_val, "--input-size", 32, *BASE,
                     "--eval", "--pretrained", ckpts / "a.pth")
    assert res[0]["top1"] == pytest.approx(stats["test_acc1"], abs=1e-4)
    assert res[0]["loss"] == pytest.approx(stats["test_loss"], rel=1e-5) and res[0]["top1_err"] == 100 - res[0]["top1"]
    import csv

    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [float(x["loss"]) for x in rows] == [r["loss"] for r in res] and rows[0]["crop_pct"] == "0.875"
    # --use-ema: a.pth's EMA weights are b.pth's model
    ema = validate.main([*common, "--checkpoint", str(ckpts / "a.pth"), "--use-ema", "--results-file",
                         str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == ema and ema[0]["loss"] == res[1]["loss"]
    assert res[0]["loss"] != res[1]["loss"]
    with pytest.raises(ConfigError, match=r"\.csv or \.json"):
        validate.main([*common, "--checkpoint", str(ckpts), "--results-file", str(tmp_path / "r.txt")])
    with pytest.raises(FileNotFoundError, match="no checkpoint file found"):
        validate.main([*common, "--checkpoint", str(tmp_path / "none*.pth")])


def test_validate_real_labels_and_test_pool(tmp_path, imagenet_named_val):
    from classification import validate

    _save_ours(tmp_path / "a.pth", _weights("mpvit_tiny", 0))
    common = ["--model", "mpvit_tiny", "--checkpoint", str(tmp_path / "a.pth"), "--data-path",
              str(imagenet_named_val), "--workers", "0", "--batch-size", "12"]
    plain = validate.main([*common, "--img-size", "32"])[0]
    # ReaL labels = the folder labels: the same top-1; every class acceptable: 100; no labels for an image: skipped
    (tmp_path / "same.json").write_text(json.dumps([[c] for c in range(4) for _ in range(3)]))
    (tmp_path / "all.json").write_text(json.dumps([[0, 1, 2, 3]] * 11 + [[]]))
    same = validate.main([*common, "--img-size", "32", "--real-labels", str(tmp_path / "same.json")])[0]
    assert same["top1"] == pytest.approx(plain["top1"]) and same["real_labels"] is True
    assert validate.main([*common, "--img-size", "32", "--real-labels", str(tmp_path / "all.json")])[0]["top1"] == 100.0
    # test-time pooling: MPViT's head is pooling + linear (used at 256 > its 224, not at 32); PPMA's is refused
    import shutil

    small = tmp_path / "small"  # one image per class: 256 px forwards are costly on CPU
    for d in (imagenet_named_val / "val").iterdir():
        (small / "val" / d.name).mkdir(parents=True)
        shutil.copy(sorted(d.iterdir())[0], small / "val" / d.name)
    pooled = validate.main([*common[:4], "--data-path", str(small), "--img-size", "256", "--test-pool",
                            "--workers", "0"])[0]
    assert pooled["test_time_pool"] is True and pooled["img_size"] == 256
    assert validate.main([*common, "--img-size", "32", "--test-pool"])[0] == plain
    _save_ours(tmp_path / "p.pth", _weights("ppma_tiny", 0))
    with pytest.raises(ConfigError, match="not global pooling"):
        validate.main(["--model", "ppma_tiny", "--checkpoint", str(tmp_path / "p.pth"), "--data-path", str(small),
                       "--img-size", "256", "--test-pool", "--workers", "0"])


# ---------------------------------------------------------------------------------------------- launchers
def test_dist_train_script(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: mpvit_tiny\n")
    proc = subprocess.run(["bash", "classification/dist_train.sh", str(cfg), "1", "--throughput", "--batch-size", "2",
                           "--input-size", "32"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PORT="29533"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"throughput_img_s"' in proc.stdout
    proc = subprocess.run(["bash", "classification/dist_train.sh", str(cfg)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.slow
def test_slurm_variables_two_tasks(tmp_path, image_folder):
    """Two tasks as srun starts them (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, no torchrun) via
    slurm_train.sh: one gloo group of 2, the same numbers as a torchrun run."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: mpvit_tiny\n")
    flags = ["--data-path", str(image_folder), "--input-size", "32", "--epochs", "1", "--batch-size", "8",
             "--num-workers", "0", "--no-pin-mem", "--no-repeated-aug", "--dist-eval", "--print-freq", "100",
             "--lr-base-size", "null", "--warmup-epochs", "0", "--aa", "null", "--mixup", "0", "--cutmix", "0"]
    env = dict(os.environ, SLURM_NTASKS="2", SLURM_JOB_NODELIST="localhost", MASTER_ADDR="127.0.0.1",
               MASTER_PORT="29541", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(["bash", "classification/slurm_train.sh", str(cfg), *flags, "--output-dir",
                               str(tmp_path / "slurm")], cwd=REPO, env=dict(env, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:]
    assert "2 process(es)" in outs[0]
    prov = json.loads((tmp_path / "slurm" / "provenance.json").read_text())
    assert prov["machine"]["world_size"] == 2
    proc = subprocess.run(["torchrun", "--nproc_per_node=2", "--master_port=29543", "classification/main.py",
                           "--config", str(cfg), *flags, "--output-dir", str(tmp_path / "torchrun")], cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_log(tmp_path / "slurm" / "log.txt"), read_log(tmp_path / "torchrun" / "log.txt")
    assert a[0]["train_loss"] == pytest.approx(b[0]["train_loss"], abs=1e-5)
    assert a[0]["test_acc1"] == pytest.approx(b[0]["test_acc1"])
