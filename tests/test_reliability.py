"""Reliability (issue #19): a killed or stopped run continues bit-exactly, a diverging run is skipped or stopped
with a report, and bad input gets a clear message naming the problem and the file (README, "Reliability":
one row per case, each with its test here).

The kill / stop tests run real processes: `torchrun --nproc_per_node=2` on a 4-class, 32 px ImageFolder,
MPViT-T with augmentation, mixup/cutmix, erasing, drop path and EMA on (every random draw a resume must
restore), 8 updates per epoch, 3 epochs. One uninterrupted run is the reference of all of them.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import timm
import torch

import models  # noqa: F401  (registers every backbone with timm)
from classification import checkpoints as ckpts
from classification.config import ConfigError, parse_args
from classification.data import DataError
from classification.image_files import BadImageError
from classification.main import main
from classification.nonfinite import NonFiniteError
from classification.output_lock import OutputDirBusy
from classification.utils import CheckpointError

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
UPDATES_PER_EPOCH = 8
RUN = ["--model", "mpvit_tiny", "--input-size", "32", "--epochs", "3", "--batch-size", "2", "--eval-batch-size", "8",
       "--num-workers", "0", "--no-pin-mem", "--lr", "1e-3", "--lr-base-size", "null", "--warmup-epochs", "1",
       "--cooldown-epochs", "0", "--sched-on-updates", "--aa", "rand-m9-mstd0.5-inc1", "--mixup", "0.8", "--cutmix",
       "1.0", "--reprob", "0.25", "--drop-path", "0.1", "--model-ema", "--model-ema-decay", "0.9",
       "--no-repeated-aug", "--dist-eval", "--step-log", "--print-freq", "100"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from classification.embedded_data import ensure_embedded_dataset

    return ensure_embedded_dataset(tmp_path_factory.mktemp("data") / "tiny", num_classes=4, train_per_class=8,
                                   val_per_class=4, image_size=32)


def torchrun(out: pathlib.Path, data, *extra, script: tuple = ("classification/main.py",), tag: str = "run"):
    """A 2-process torchrun of the trainer (`script`: the script and its own first arguments); its output
    goes to <out>.<tag>.txt."""
    log = open(f"{out}.{tag}.txt", "w")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *script, *RUN,
           "--data-path", str(data), "--output-dir", str(out), *map(str, extra)]
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)


def tree(pid: int) -> list[int]:
    """pid and all its descendants (torchrun starts every rank in a session of its own: a process-group
    signal to torchrun does not reach them)."""
    pids = [pid]
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            pids += tree(int(child))
    return pids


def signal_all(pid: int, sig):
    for p in tree(pid):
        os.kill(p, sig)


def finish(proc, out: pathlib.Path, tag: str = "run", timeout: float = 600) -> str:
    proc.wait(timeout=timeout)
    return pathlib.Path(f"{out}.{tag}.txt").read_text()


def wait_for_update(proc, out: pathlib.Path, update: int, timeout: float = 600):
    """Polls steps.jsonl (rank 0 flushes every update) until `update` is logged."""
    path, deadline = out / "steps.jsonl", time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before the update a test waits for"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.endswith("}")]
            if lines and json.loads(lines[-1])["update"] >= update:
                return
        time.sleep(0.02)
    raise TimeoutError(f"update {update} not reached")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data):
    """The uninterrupted run (with recovery points every 4 updates, which must not change a bit)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    text = finish(torchrun(out, tiny_data, "--save-every-steps", 4), out)
    assert "training time" in text, text[-3000:]
    return out


def assert_same_run(out: pathlib.Path, ref: pathlib.Path):
    """The same log, step log, summary and final weights, EMA and optimizer state, bit for bit."""
    for name in ("log.txt", "steps.jsonl", "summary.csv"):
        assert (out / name).read_text() == (ref / name).read_text(), name
    assert len((out / "log.txt").read_text().splitlines()) == 3
    a, b = (torch.load(d / "checkpoint.pth", weights_only=True) for d in (out, ref))
    assert a["epoch"] == b["epoch"] == 2
    for key in ("model", "model_ema"):
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    for s, t in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(s[k], t[k]) for k in s)


# ---------------------------------------------------------------------------------------------- kill and resume
@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_bit_exact_from_recovery_checkpoint(reference, tiny_data, tmp_path):
    """SIGKILL to torchrun and both ranks at once (a lost node) after update 14 (epoch 1; recovery.pth written
    at update 12), then --resume auto: it continues in epoch 1 after batch 4 and ends with the reference's
    weights and logs."""
    out = tmp_path / "out"
    proc = torchrun(out, tiny_data, "--save-every-steps", 4)
    wait_for_update(proc, out, 14)
    ranks = tree(proc.pid)[1:]
    signal_all(proc.pid, signal.SIGKILL)
    finish(proc, out)
    time.sleep(0.5)
    assert len(ranks) == 2 and not any(pathlib.Path(f"/proc/{p}/cmdline").read_bytes() for p in ranks
                                       if pathlib.Path(f"/proc/{p}").exists())
    assert (out / "recovery.pth").is_file() and len((out / "log.txt").read_text().splitlines()) == 1
    text = finish(torchrun(out, tiny_data, "--save-every-steps", 4, "--resume", "auto", tag="resume"), out, "resume")
    assert "resumed from" in text and "epoch 1 continues after batch 4/8" in text, text[-3000:]
    assert_same_run(out, reference)
    assert not (out / "recovery.pth").exists()  # superseded by the epoch's checkpoint


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_keeps_the_old_one_and_resumes_bit_exact(reference, tiny_data, tmp_path):
    """SIGKILL of torchrun and both ranks halfway through writing epoch 1's checkpoint.pth (no recovery points):
    the epoch-0 checkpoint is intact, and --resume auto redoes epoch 1, saying so, to the reference's end."""
    out = tmp_path / "out"
    proc = torchrun(out, tiny_data, script=("tests/fixtures/reliability/die_while_saving.py", "checkpoint.pth", "2"))
    finish(proc, out)
    assert proc.returncode != 0 and (out / "checkpoint.pth.tmp").is_file()  # died with half a file written
    assert torch.load(out / "checkpoint.pth", weights_only=True)["epoch"] == 0
    text = finish(torchrun(out, tiny_data, "--resume", "auto", tag="resume"), out, "resume")
    assert "epoch 1 starts from its beginning: 8 update(s) logged after the checkpoint are redone" in text, text[-3000:]
    assert_same_run(out, reference)
    assert not (out / "checkpoint.pth.tmp").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig,target", [(signal.SIGTERM, "all"), (signal.SIGINT, "launcher")],
                         ids=["SIGTERM-to-all", "SIGINT-to-torchrun"])
def test_stop_signal_saves_at_next_update_and_exits_cleanly(reference, tiny_data, tmp_path, sig, target):
    """SIGTERM to torchrun and every rank (a scheduler's scancel: each rank gets it twice, directly and from
    torchrun) or SIGINT to torchrun alone (Ctrl-C in its terminal; torchrun forwards it): every rank stops at
    the same update, recovery.pth holds it, no rank fails; --resume auto finishes the run bit-exactly."""
    out = tmp_path / "out"
    proc = torchrun(out, tiny_data)
    wait_for_update(proc, out, 10)
    signal_all(proc.pid, sig) if target == "all" else os.kill(proc.pid, sig)
    text = finish(proc, out)
    name = signal.Signals(sig).name
    assert f"stopped by {name} in epoch 1 after update" in text and "continue with --resume auto" in text, text[-3000:]
    assert str(REPO / "classification") not in text  # no traceback through the trainer on any rank
    assert "forcefully exiting" not in text  # every rank ended within torchrun's grace period
    assert (out / "recovery.pth").is_file()
    text = finish(torchrun(out, tiny_data, "--resume", "auto", tag="resume"), out, "resume")
    assert "epoch 1 continues after batch" in text, text[-3000:]
    assert_same_run(out, reference)


# ---------------------------------------------------------------------------------------------- in-process runs
FAULTS = {"nan_loss": set(), "inf_grad": set(), "calls": 0}  # training forwards (1-based) that go wrong


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


class FaultyNet(torch.nn.Module):
    """A model whose runs cost seconds; its n-th training forward gives a NaN output (loss) or an inf
    gradient when FAULTS says so."""

    def __init__(self, num_classes=1000, in_chans=3, **kwargs):
        super().__init__()
        self.conv, self.head = torch.nn.Conv2d(in_chans, 4, 3, stride=4), torch.nn.Linear(4, num_classes)
        self.pretrained_cfg = {"classifier": "head", "num_classes": num_classes}

    def forward(self, x):
        if x.shape[1] != self.conv.in_channels:
            raise ValueError(f"FaultyNet was built for {self.conv.in_channels} input channels, got {x.shape[1]}")
        y = self.head(self.conv(x).mean((2, 3)))
        if self.training:
            FAULTS["calls"] += 1
            if FAULTS["calls"] in FAULTS["nan_loss"]:
                y = y * float("nan")
            if FAULTS["calls"] in FAULTS["inf_grad"]:
                y = _InfGrad.apply(y)
        return y


@timm.models.register_model
def reliability_test_net(pretrained=False, **kwargs):
    return FaultyNet(**kwargs)


@pytest.fixture(autouse=True)
def _no_faults():
    FAULTS.update(nan_loss=set(), inf_grad=set(), calls=0)
    yield


TINY = ["--model", "reliability_test_net", "--input-size", "24", "--batch-size", "4", "--eval-batch-size", "8",
        "--num-workers", "0", "--no-pin-mem", "--print-freq", "100", "--lr", "1e-3", "--lr-base-size", "null",
        "--warmup-epochs", "0", "--sched", "constant", "--no-repeated-aug", "--aa", "null", "--mixup", "0",
        "--cutmix", "0", "--reprob", "0"]


def run_tiny(data, out, *extra):
    return main([*TINY, "--data-path", str(data), "--output-dir", str(out), *map(str, extra)])


def read_log(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- diverging runs
def test_nonfinite_loss_is_skipped_counted_and_reported(tiny_data, tmp_path, capsys):
    """Two NaN losses (updates 11 and 12, epoch 1): both skipped with a report naming epoch, step, loss and the
    largest gradients; the run ends normally with finite weights, log.txt counts them, the optimizer stepped
    14 times of 16."""
    FAULTS["nan_loss"] = {11, 12}
    run_tiny(tiny_data, tmp_path, "--epochs", 2)
    out = capsys.readouterr().out
    assert "non-finite loss at epoch 1, step 3/8 (update 11): loss nan, gradient norm nan" in out
    assert "largest parameter gradients: " in out and "head.weight nan" in out
    assert "Update skipped (2 in a row, 2 in this run; the run stops after 5 in a row)" in out
    log = read_log(tmp_path / "log.txt")
    assert "train_skipped_updates" not in log[0] and log[1]["train_skipped_updates"] == 2
    assert all(math.isfinite(r["train_loss"]) for r in log)
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert {int(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {16 - 2}  # the skipped never stepped


def test_nonfinite_limit_in_a_row_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    """Every update from 11 on has a NaN loss: the 5th in a row stops the run with the report; checkpoint.pth
    stays epoch 0's, finite; the command line prints one error line (exit status 2)."""
    FAULTS["nan_loss"] = set(range(11, 100))
    with pytest.raises(NonFiniteError, match=r"non-finite loss at epoch 1, step 7/8 \(update 15\).*Stopping: 5 "
                                             r"non-finite updates in a row \(--nonfinite-limit 5\)"):
        run_tiny(tiny_data, tmp_path, "--epochs", 3)
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == 0 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert len(read_log(tmp_path / "log.txt")) == 1


def test_nonfinite_stop_policy_and_gradient_only_divergence(tiny_data, tmp_path):
    """--nonfinite stop stops at the first bad update; a finite loss with an inf gradient counts too."""
    FAULTS["inf_grad"] = {3}
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at epoch 0, step 3/8 \(update 3\): loss [0-9.]+, "
                                             r"gradient norm (inf|nan); largest parameter gradients: .*Stopping: "
                                             r"--nonfinite stop"):
        run_tiny(tiny_data, tmp_path, "--epochs", 1, "--nonfinite", "stop")


def _engine_epoch(batches, model, args, scaler=None, guard=None):
    from classification.engine import train_one_epoch
    from classification.optimization import Stepper, build_scheduler

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler, _ = build_scheduler(args, optimizer, len(batches), {"lr": 0.1, "warmup_lr": 0.1, "min_lr": 0.1})
    return train_one_epoch(model, torch.nn.CrossEntropyLoss(), batches, optimizer, Stepper(scheduler, args, len(batches)),
                           scaler, torch.device("cpu"), 0, args, updates_per_epoch=len(batches), guard=guard)


def test_skipped_update_leaves_weights_as_if_the_batch_were_absent(capsys):
    """A NaN input batch: the report says the input holds NaN/Inf; the weights equal, bit for bit, those of an
    epoch without that batch (a constant lr: the schedule slot does not matter)."""
    args = parse_args([*TINY, "--data-path", "/x", "--nonfinite-limit", "2"])
    torch.manual_seed(0)
    batches = [(torch.randn(4, 3, 24, 24), torch.randint(0, 4, (4,))) for _ in range(4)]
    bad = (batches[2][0].clone().index_fill_(0, torch.tensor([1]), float("nan")), batches[2][1])
    torch.manual_seed(1)
    a = FaultyNet(num_classes=4)
    b = FaultyNet(num_classes=4)
    b.load_state_dict(a.state_dict())
    stats = _engine_epoch(batches[:2] + [bad] + batches[3:], a, args)
    _engine_epoch(batches[:2] + batches[3:], b, args)
    assert stats["skipped"] == 1 and "that input batch holds NaN/Inf values" in capsys.readouterr().out
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_gradscaler_scale_collapse_is_reported_and_stops(capsys):
    """fp16-style GradScaler (on CPU) with inf gradients every update: the first overflows are the scaler's
    business (scale halved), a scale below 1 is reported as a collapse and counts towards the limit."""
    args = parse_args([*TINY, "--data-path", "/x", "--nonfinite-limit", "2"])
    FAULTS["inf_grad"] = set(range(1, 100))
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    batches = [(torch.randn(4, 3, 24, 24), torch.randint(0, 4, (4,))) for _ in range(8)]
    with pytest.raises(NonFiniteError, match=r"GradScaler scale collapse at epoch 0, step 4/8 .*scale 0\.25"):
        _engine_epoch(batches, FaultyNet(num_classes=4), args, scaler=scaler)
    assert "GradScaler scale collapse at epoch 0, step 3/8 (update 3): the fp16 gradients overflow even at scale 0.5" \
        in capsys.readouterr().out


def test_nonfinite_weights_are_never_saved_over_a_good_checkpoint(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "model_ema": None, "epoch": 0, "checkpoint_hist": []}
    args = parse_args([*TINY, "--data-path", "/x"])
    ckpts.save_epoch(args, tmp_path, state, 0, False, {}, [])
    bad = dict(state, model={"w": torch.tensor([1.0, float("inf")])}, epoch=1)
    with pytest.raises(NonFiniteError, match=r"model weights after epoch 1 hold NaN/Inf: not saved; .*checkpoint.pth "
                                             r"keeps the last good state"):
        ckpts.save_epoch(args, tmp_path, bad, 1, False, {}, [])
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=True)["epoch"] == 0


# ---------------------------------------------------------------------------------------------- bad input: data
@pytest.fixture
def data_copy(tiny_data, tmp_path):
    import shutil

    return pathlib.Path(shutil.copytree(tiny_data, tmp_path / "data"))


def _images(root, split):
    return sorted((root / split).rglob("*.png"))


def test_unreadable_images_are_named_counted_and_skipped(data_copy, tmp_path, capsys):
    """A truncated PNG in train/ and a non-image in val/: each named once, counted at the epoch's end; training
    completes (the next image takes the place), evaluation leaves the val file out (15 of 16 images)."""
    truncated, garbage = _images(data_copy, "train")[5], _images(data_copy, "val")[2]
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage.write_text("not an image")
    run_tiny(data_copy, tmp_path / "out", "--epochs", 2)
    out = capsys.readouterr().out
    assert out.count(f"warning: unreadable image file {truncated} in train") == 1
    assert out.count(f"warning: unreadable image file {garbage} in val") == 1
    assert "warning: 1 unreadable image file(s) skipped in the train split so far" in out
    assert "Test: * Acc@1" in out and "(15 images)" in out and "(16 images)" not in out
    assert len(read_log(tmp_path / "out" / "log.txt")) == 2


def test_unreadable_image_stops_the_run_with_bad_images_stop(data_copy, tmp_path):
    bad = _images(data_copy, "train")[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(BadImageError, match=f"unreadable image file {bad} in train .*--bad-images skip"):
        run_tiny(data_copy, tmp_path / "out", "--epochs", 1, "--bad-images", "stop")


def test_validate_names_and_leaves_out_an_unreadable_image(data_copy, tmp_path, capsys):
    from classification import validate

    garbage = _images(data_copy, "val")[0]
    garbage.write_text("not an image")
    torch.save({"model": timm.create_model("mpvit_tiny", num_classes=4).state_dict(), "epoch": 0}, tmp_path / "a.pth")
    res = validate.main(["--model", "mpvit_tiny", "--checkpoint", str(tmp_path / "a.pth"), "--data-path",
                         str(data_copy), "--img-size", "32", "--workers", "0"])
    out = capsys.readouterr().out
    assert f"unreadable image file {garbage} in val" in out and "1 unreadable image file(s) left out" in out
    assert "(15 images)" in out and res[0]["top1"] * 15 / 100 == pytest.approx(round(res[0]["top1"] * 15 / 100), abs=1e-3)


def test_empty_and_one_class_dataset_folders(data_copy, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{empty / 'val'}: no usable images: Found 0 images"):
        run_tiny(empty, tmp_path / "o1", "--epochs", 1)
    for split in ("train", "val"):
        for d in sorted((data_copy / split).iterdir())[1:]:
            shutil.rmtree(d)
    with pytest.raises(DataError, match=rf"{data_copy / 'val'}: 1 class \(\['c00_disc'\]\): a classifier needs at "
                                        r"least 2, one subfolder per class"):
        run_tiny(data_copy, tmp_path / "o2", "--epochs", 1)


def test_std_zero_is_refused(tiny_data):
    with pytest.raises(ConfigError, match=r"--std must be > 0 per channel .*got \[0.2, 0.0, 0.2\]"):
        parse_args([*TINY, "--data-path", str(tiny_data), "--std", "0.2", "0", "0.2"])
    with pytest.raises(ConfigError, match="MultiEpochsDataLoader cannot"):
        parse_args([*TINY, "--data-path", str(tiny_data), "--save-every-steps", "5", "--use-multi-epochs-loader"])


# ---------------------------------------------------------------------------------------------- bad input: checkpoints
@pytest.fixture(scope="module")
def finished_tiny(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run") / "out"
    run_tiny(tiny_data, out, "--epochs", 1)
    return out


@pytest.mark.parametrize("kind,message", [
    ("truncated", r"not a checkpoint or truncated: truncated or corrupt \(\d+ bytes; the zip archive has no directory\)"),
    ("text", r"not a checkpoint or truncated: not a PyTorch checkpoint \(a torch file is a zip archive or a pickle"),
    ("empty", r"not a checkpoint or truncated: empty file \(0 bytes\)"),
    ("foreign", r"is not a checkpoint of this trainer \(no 'model' / 'epoch'\)"),
])
def test_resume_from_a_broken_or_foreign_file_names_it(finished_tiny, tiny_data, tmp_path, kind, message):
    path = tmp_path / "checkpoint.pth"
    good = (finished_tiny / "checkpoint.pth").read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "text":
        path.write_text("epoch: 3\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=f"{path}: {message}" if kind != "foreign" else f"{path} {message}"):
        run_tiny(tiny_data, tmp_path, "--epochs", 2, "--resume", "auto")


def test_pretrained_and_validate_name_a_truncated_file(finished_tiny, tiny_data, tmp_path):
    from classification import validate

    path = tmp_path / "w.pth"
    path.write_bytes((finished_tiny / "checkpoint.pth").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"--pretrained {path}: truncated or corrupt"):
        run_tiny(tiny_data, tmp_path / "o", "--epochs", 1, "--pretrained", path)
    with pytest.raises(CheckpointError, match=f"--checkpoint {path}: truncated or corrupt"):
        validate.main(["--model", "mpvit_tiny", "--checkpoint", str(path), "--data-path", str(tiny_data),
                       "--workers", "0"])


def test_checkpoint_of_another_model_or_class_count(finished_tiny, tiny_data, tmp_path, data_copy):
    import shutil

    with pytest.raises(CheckpointError, match=r"is a checkpoint of reliability_test_net, this run builds mpvit_tiny"):
        main(["--model", "mpvit_tiny", "--data-path", str(tiny_data), "--input-size", "32", "--eval",
              "--resume", str(finished_tiny / "checkpoint.pth"), "--num-workers", "0"])
    for split in ("train", "val"):  # 3 classes instead of 4
        shutil.rmtree(sorted((data_copy / split).iterdir())[-1])
    with pytest.raises(CheckpointError, match=r"\(model\) does not fit this model \(its classifier has 4 classes, this "
                                              r"run 3: another dataset or --num-classes\): shapes head.weight"):
        run_tiny(data_copy, tmp_path, "--epochs", 2, "--resume", finished_tiny / "checkpoint.pth")
    with pytest.raises(models.CheckpointMismatchError, match=r"does not match MPViT:\n  shape mismatches \(2\): "
                                                             r"cls_head.cls.weight: checkpoint \(10, 216\) vs model "
                                                             r"\(3, 216\)"):
        torch.save({"model": timm.create_model("mpvit_tiny", num_classes=10).state_dict()}, tmp_path / "m10.pth")
        main(["--model", "mpvit_tiny", "--data-path", str(data_copy), "--input-size", "32", "--eval", "--pretrained",
              str(tmp_path / "m10.pth"), "--num-workers", "0"])


def test_command_line_reports_a_user_error_in_one_line(tmp_path, tiny_data):
    (tmp_path / "checkpoint.pth").write_text("not a checkpoint")
    proc = subprocess.run([sys.executable, "classification/main.py", "--model", "mpvit_tiny", "--input-size", "32",
                           *TINY[4:], "--data-path", str(tiny_data),
                           "--output-dir", str(tmp_path), "--resume", "auto"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'checkpoint.pth'}: not a checkpoint or truncated" in proc.stderr


# ---------------------------------------------------------------------------------------------- bad input: output folder
def test_second_run_on_the_same_output_folder_is_refused_until_the_first_ends(tiny_data, tmp_path):
    """Another process holds the folder (as a running trainer does): a run there is refused, naming it, and
    writes nothing; once the holder dies (SIGKILL: the kernel drops the lock) the folder is free again."""
    code = ("import sys, time; from classification.output_lock import OutputLock; lock = OutputLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirBusy, match=rf"output folder {tmp_path} is in use by another run \(pid "
                                                rf"{holder.pid} on .*\): use another --output-dir"):
            run_tiny(tiny_data, tmp_path, "--epochs", 1)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]
    finally:
        holder.kill()
        holder.wait()
    run_tiny(tiny_data, tmp_path, "--epochs", 1)
    assert len(read_log(tmp_path / "log.txt")) == 1


# ---------------------------------------------------------------------------------------------- bad input: full disk
def test_a_real_write_failure_keeps_the_old_checkpoint(tmp_path):
    """The kernel refuses the write (RLIMIT_FSIZE: a file may not grow past 64 KiB, the same EFBIG / ENOSPC path
    as a full disk): a clear CheckpointError, the earlier file intact, no .tmp left behind."""
    code = f"""
import resource, sys, torch
from classification.utils import save_atomic, CheckpointError
path = {str(tmp_path / 'checkpoint.pth')!r}
save_atomic({{'epoch': 0, 'w': torch.zeros(10)}}, path)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
try:
    save_atomic({{'epoch': 1, 'w': torch.zeros(100000)}}, path)
except CheckpointError as err:
    print(err)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"could not write {tmp_path / 'checkpoint.pth'}: " in proc.stdout and "File too large" in proc.stdout
    assert "MiB free on its file system); the previous checkpoint.pth is intact" in proc.stdout
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_full_disk_while_training_stops_clearly_and_the_run_resumes(tiny_data, tmp_path, monkeypatch):
    """ENOSPC on epoch 1's checkpoint write: the run stops naming the file and the cause, epoch 0's checkpoint
    is intact; with space again, --resume auto finishes the run with the same numbers as one never stopped."""
    import errno

    real_save, seen = torch.save, []

    def save(obj, f, *a, **k):
        if str(getattr(f, "name", "")).endswith("checkpoint.pth.tmp"):
            seen.append(1)
            if len(seen) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointError, match=rf"could not write {tmp_path / 'out' / 'checkpoint.pth'}: \[Errno 28\] "
                                              r"No space left on device .*the previous checkpoint.pth is intact"):
        run_tiny(tiny_data, tmp_path / "out", "--epochs", 3)
    monkeypatch.undo()
    assert torch.load(tmp_path / "out" / "checkpoint.pth", weights_only=True)["epoch"] == 0
    assert not list((tmp_path / "out").glob("*.tmp"))
    run_tiny(tiny_data, tmp_path / "out", "--epochs", 3, "--resume", "auto")
    run_tiny(tiny_data, tmp_path / "ref", "--epochs", 3)
    assert (tmp_path / "out" / "log.txt").read_text() == (tmp_path / "ref" / "log.txt").read_text()


# ---------------------------------------------------------------------------------------------- bad input: model input
FAMILIES = [("mpvit_tiny", 32, None), ("pacavit_tiny", 32, 32), ("ppma_tiny", 32, 32), ("p2t_tiny", 72, 65),
            ("spatial_mamba_tiny", 32, None)]


@pytest.mark.parametrize("name,size,minimum", FAMILIES)
def test_model_input_checks_per_family(name, size, minimum):
    """What every family does with a bad input tensor today (the models' own checks; see the README table):
    wrong channel count, too small an input, a uint8 batch or one of another dtype than the weights raise
    ValueError naming the problem (a float64 model takes float64); NaN/Inf propagate to the output (the
    trainer's non-finite guard names them)."""
    model = timm.create_model(name, num_classes=4).eval()
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"was built for 3 input channels, got 1"):
            model(torch.randn(1, 1, size, size))
        if minimum:
            with pytest.raises(ValueError, match=rf"(at least {minimum}x{minimum}|>= {minimum} px)"):
                model(torch.randn(1, 3, minimum - 1, minimum - 1))
        else:  # MPViT and Spatial-Mamba take any size down to 1 pixel
            assert torch.isfinite(model(torch.randn(1, 3, 1, 1))).all()
        with pytest.raises(ValueError, match=r"expects a normalised floating-point image batch, got torch.uint8"):
            model(torch.zeros(1, 3, size, size, dtype=torch.uint8))
        with pytest.raises(ValueError, match=r"weights are torch.float32 and the input is torch.float64"):
            model(torch.zeros(1, 3, size, size, dtype=torch.float64))
        assert model.double()(torch.zeros(1, 3, size, size, dtype=torch.float64)).dtype == torch.float64
        model.float()
        x = torch.randn(1, 3, size, size)
        x[0, 0, 0, 0] = float("nan")
        assert not torch.isfinite(model(x)).all()


def test_trainer_refuses_an_input_size_or_channel_count_the_model_cannot_take(tiny_data, tmp_path):
    """Checked at start-up by one forward of a blank input_size image, not at the first batch."""
    with pytest.raises(ConfigError, match=r"--input-size 32: p2t_tiny cannot take a 3-channel 32x32 image: P2T input "
                                          r"32x32 is too small: height and width must be >= 65 px"):
        main(["--model", "p2t_tiny", "--data-path", str(tiny_data), "--input-size", "32", "--num-workers", "0",
              "--output-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"--input-size 32: mpvit_tiny with --model-kwargs \{'in_chans': 1\} cannot "
                                          r"take a 3-channel 32x32 image: MPViT was built for 1 input channels, got 3"):
        main(["--model", "mpvit_tiny", "--data-path", str(tiny_data), "--input-size", "32", "--num-workers", "0",
              "--model-kwargs", "in_chans=1", "--output-dir", str(tmp_path)])
