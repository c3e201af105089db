"""Kill, stop and resume for detection/ and segmentation/ (openmmlab.checkpoint, .preemption, .resumable).

- fast: a file that is not a checkpoint (empty, text, a plain pickle, a zip without torch's data), a truncated
  one, a weights-only one given to ``--resume`` and another model's checkpoint each stop the run with a message
  naming the file and the problem; ``make_resumable`` puts the loop and hooks in a config once;
- slow, real processes (2-process ``dist_train.sh`` on CPU, gloo) against one uninterrupted reference run of the
  same command: the whole job SIGKILLed once a checkpoint exists, then ``--resume``; SIGTERM to the workers
  (a checkpoint at the next step, worker status 143), then ``--resume``; the resumed scalars (iterations, lr,
  every loss) equal the reference's exactly; one process (no torchrun) stopped by SIGINT exits with 130.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402

from models import CheckpointMismatchError  # noqa: E402
from openmmlab.checkpoint import CheckpointReadError, load_full_checkpoint, read_full_checkpoint  # noqa: E402
from openmmlab.launch import replace_sync_bn  # noqa: E402
from openmmlab.resumable import make_resumable, step_seed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = {"detection": "configs/detection/smoke/mask-rcnn_p2t_smoke.py",
         "segmentation": "configs/segmentation/smoke/upernet_p2t_smoke.py"}
# Short runs with checkpoints inside them. detection: 12 of the 24 training images (3 steps per epoch with 2
# processes of 2 images), 2 epochs, iteration checkpoints every 2 steps (so a checkpoint falls inside an epoch),
# no validation; segmentation: 16 iterations, a checkpoint every 4, validation at the end.
OPTIONS = {
    "detection": ["train_dataloader.dataset.indices=12", "train_cfg.max_epochs=2", "val_cfg=None",
                  "val_dataloader=None", "val_evaluator=None", "default_hooks.checkpoint.by_epoch=False",
                  "default_hooks.checkpoint.interval=2", "randomness.seed=0"],
    "segmentation": ["train_cfg.max_iters=16", "default_hooks.checkpoint.interval=4",
                     "default_hooks.logger.interval=1"],
}
LAST_ITER = {"detection": 6, "segmentation": 16}
NOT_COMPARED = {"time", "data_time", "eta", "memory"}  # wall-clock scalars


@pytest.fixture(autouse=True, scope="module")
def _embedded_roots(tmp_path_factory):
    """Embedded datasets in a temporary directory, shared with the other OpenMMLab tests, never in the repository;
    the environment of the tests' child processes."""
    root = tmp_path_factory.getbasetemp() / "embedded"
    saved = {k: os.environ.get(k) for k in ("EMBEDDED_COCO_ROOT", "EMBEDDED_ADE_ROOT", "LOCAL_RANK", "WORLD_SIZE")}
    os.environ.update(EMBEDDED_COCO_ROOT=str(root / "embedded_coco"), EMBEDDED_ADE_ROOT=str(root / "embedded_ade"))
    os.environ.pop("LOCAL_RANK", None)
    os.environ.pop("WORLD_SIZE", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# ------------------------------------------------------------------------------------------- bad checkpoints
def _torch_checkpoint(path: Path, **extra) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(4096)}, **extra}, path)
    return path


def _read_error(path: Path) -> str:
    with pytest.raises(CheckpointReadError) as err:
        read_full_checkpoint(str(path))
    assert str(path) in str(err.value), "the message names the file"
    assert "Traceback" not in str(err.value) and "WeightsUnpickler" not in str(err.value)
    return str(err.value)


def test_empty_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "not a checkpoint (an empty file)" in _read_error(tmp_path / "empty.pth")


def test_text_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pth").write_text("epoch 12: mAP 0.41\n")
    assert "not a checkpoint (not written by torch.save; it starts with b'epoch 12'" in _read_error(
        tmp_path / "notes.pth")


def test_plain_pickle_is_not_a_checkpoint(tmp_path):
    with open(tmp_path / "pickled.pth", "wb") as f:
        pickle.dump({"state_dict": {"w": [0.0] * 4}}, f)
    assert "not a checkpoint (a plain pickle, not written by torch.save)" in _read_error(tmp_path / "pickled.pth")


def test_zip_without_torch_data_is_not_a_checkpoint(tmp_path):
    with zipfile.ZipFile(tmp_path / "archive.pth", "w") as z:
        z.writestr("weights.txt", "0 0 0")
    assert "not a checkpoint (a zip archive without torch.save's data.pkl)" in _read_error(tmp_path / "archive.pth")


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_checkpoint_is_named(tmp_path, keep):
    """What a save or copy killed half-way leaves."""
    data = _torch_checkpoint(tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:int(len(data) * keep)])
    assert re.search(r"cut\.pth: truncated checkpoint \(\d+ bytes;", _read_error(tmp_path / "cut.pth"))


def test_legacy_format_truncated_is_named(tmp_path):
    torch.save({"w": torch.zeros(64)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    data = (tmp_path / "old.pth").read_bytes()
    (tmp_path / "old_cut.pth").write_bytes(data[:len(data) // 2])
    assert "old_cut.pth: corrupted or truncated checkpoint" in _read_error(tmp_path / "old_cut.pth")
    assert set(read_full_checkpoint(str(tmp_path / "old.pth"))) == {"w"}  # the complete legacy file reads


def _train_main(name, *argv):
    tool = importlib.import_module("openmmlab.tools.train")
    task = importlib.import_module(f"{name}.task").TASK
    return tool.main(task, [SMOKE[name], "--launcher", "none", *argv])


def test_truncated_checkpoint_given_to_resume_stops_with_its_name(tmp_path):
    """Through train.py: a message (SystemExit), not a traceback of the unpickler."""
    data = _torch_checkpoint(tmp_path / "full.pth").read_bytes()
    (tmp_path / "iter_8.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match=rf"{re.escape(str(tmp_path / 'iter_8.pth'))}: truncated checkpoint"):
        _train_main("segmentation", "--work-dir", str(tmp_path / "work"), "--resume", str(tmp_path / "iter_8.pth"))


def _model(name):
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(str(REPO / SMOKE[name]))
    replace_sync_bn(cfg.model)
    scope = importlib.import_module(f"{name}.task").TASK.scope
    init_default_scope(scope)
    return importlib.import_module(f"{scope}.registry").MODELS.build(cfg.model)


def test_weights_only_file_given_to_resume_is_named(tmp_path):
    path = tmp_path / "release.pth"
    torch.save({"state_dict": _model("segmentation").state_dict()}, path)  # fits the model, but no training state
    with pytest.raises(SystemExit, match=rf"{re.escape(str(path))}: not a training checkpoint to resume from "
                                         rf"\(no meta\.epoch, meta\.iter, message_hub\); .* load_from="):
        _train_main("segmentation", "--work-dir", str(tmp_path / "work"), "--resume", str(path))


def test_checkpoint_of_another_model_is_named(tmp_path):
    """A segmentor's training checkpoint given to a detector: the message names the file and the run that wrote
    it, then the keys; a classifier's (no key in common) says so."""
    path = tmp_path / "iter_40.pth"
    torch.save({"state_dict": _model("segmentation").state_dict(),
                "meta": {"epoch": 0, "iter": 40, "experiment_name": "upernet_p2t_smoke_20260101_000000"}}, path)
    detector = _model("detection")
    with pytest.raises(CheckpointMismatchError) as err:
        load_full_checkpoint(detector, read_full_checkpoint(str(path)), source=str(path))
    msg = str(err.value)
    assert msg.startswith(f"{path} (written by run upernet_p2t_smoke_20260101_000000) does not match MaskRCNN:")
    assert re.search(r"missing keys \(\d+\): neck\.", msg), msg
    assert re.search(r"unexpected keys \(\d+\): auxiliary_head\.", msg), msg

    torch.save({"state_dict": {"stem.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(10, 8)}},
               tmp_path / "classifier.pth")
    with pytest.raises(CheckpointMismatchError, match=r"classifier\.pth: a checkpoint of another model, no key in "
                                                      r"common with MaskRCNN"):
        load_full_checkpoint(detector, read_full_checkpoint(str(tmp_path / "classifier.pth")),
                             source=str(tmp_path / "classifier.pth"))


# ------------------------------------------------------------------------------------------- make_resumable
@pytest.mark.parametrize("name", ["detection", "segmentation"])
def test_make_resumable_sets_the_loop_and_hooks_once(name):
    cfg = Config.fromfile(str(REPO / SMOKE[name]))
    loop = cfg.train_cfg.type
    make_resumable(cfg)
    make_resumable(cfg)
    assert cfg.train_cfg.type == {"EpochBasedTrainLoop": "ResumableEpochBasedTrainLoop"}.get(loop, loop)
    types = [h["type"] for h in cfg.custom_hooks]
    assert types.count("StepSeedHook") == 1 and types.count("PreemptionHook") == 1

    short = Config(dict(train_cfg=dict(by_epoch=True, max_epochs=2)))  # mmengine's form without a type
    make_resumable(short)
    assert short.train_cfg == dict(type="ResumableEpochBasedTrainLoop", max_epochs=2)


def test_train_script_makes_every_run_resumable(tmp_path):
    tool = importlib.import_module("openmmlab.tools.train")
    task = importlib.import_module("detection.task").TASK
    cfg = tool.build_cfg(task, tool.parse_args(task, [SMOKE["detection"], "--work-dir", str(tmp_path)]))
    assert cfg.train_cfg.type == "ResumableEpochBasedTrainLoop"
    assert {"StepSeedHook", "PreemptionHook"} <= {h["type"] for h in cfg.custom_hooks}


def test_step_seeds_differ_by_seed_step_and_stream():
    seeds = {step_seed(s, i) for s in (0, 1) for i in range(100)} | {step_seed(0, i, 1) for i in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**32 for s in seeds)


# ------------------------------------------------------------------------------------------- real processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PORT=str(_free_port()),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("TRITON_INTERPRET", None)
    return env


def _start(cmd: list, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)


def _dist_train(name: str, work: Path, *argv) -> list:
    return ["bash", f"{name}/dist_train.sh", SMOKE[name], "2", "--work-dir", work, *argv,
            "--cfg-options", *OPTIONS[name]]


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            _signal_tree(proc.pid, signal.SIGKILL)
    return log.read_text()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return children


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants: torchrun starts each worker in a session of its own, so a process group
    signal does not reach them; a scheduler kills every process of the job (its cgroup)."""
    children, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _signal_tree(pid: int, sig: int, workers_only: bool = False) -> None:
    for p in _tree(pid)[1:] if workers_only else _tree(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _wait(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before {what}"
        assert time.monotonic() - start < timeout, f"no {what} after {timeout} s"
        time.sleep(0.02)


def _runs(work: Path) -> list[list[dict]]:
    """The training scalars of each run in ``work`` (mmengine's <timestamp>/vis_data/scalars.json), oldest first."""
    files = sorted(work.glob("*/vis_data/scalars.json"))
    return [[json.loads(line) for line in f.read_text().splitlines() if line.strip()] for f in files]


def _steps(records: list[dict]) -> list[dict]:
    return [r for r in records if "iter" in r]


def _logged_iters(work: Path) -> int:
    runs = _runs(work)
    return len(_steps(runs[-1])) if runs else 0


def _last_checkpoint(work: Path) -> int:
    """The iteration of the checkpoint ``--resume`` reads (``last_checkpoint``, as mmengine writes it)."""
    return int(re.fullmatch(r"iter_(\d+)\.pth", Path((work / "last_checkpoint").read_text().strip()).name)[1])


def _assert_same_steps(records: list[dict], reference: dict[int, dict], what: str) -> None:
    """Every step's scalars (lr, each loss, accuracies; not the timings) equal the reference run's, bit for bit."""
    for r in records:
        ref = reference[r["iter"]]
        differ = {k: (v, ref.get(k)) for k, v in r.items() if k not in NOT_COMPARED and v != ref.get(k)}
        assert not differ, f"{what}, iteration {r['iter']}: (this run, reference) {differ}"


_REFERENCES: dict[str, dict[int, dict]] = {}


@pytest.fixture
def reference(tmp_path_factory):
    """The uninterrupted 2-process run of a task (once per module): its scalars by iteration."""
    def get(name: str) -> dict[int, dict]:
        if name not in _REFERENCES:
            work = tmp_path_factory.mktemp(f"{name}_reference")
            proc = _start(_dist_train(name, work), work / "run.log")
            out = _finish(proc, work / "run.log")
            assert proc.returncode == 0, out[-5000:]
            steps = _steps(_runs(work)[-1])
            assert [r["iter"] for r in steps] == list(range(1, LAST_ITER[name] + 1)), out[-5000:]
            _REFERENCES[name] = {r["iter"]: r for r in steps}
        return _REFERENCES[name]
    return get


def _resume_and_compare(name: str, work: Path, ref: dict[int, dict], resumed_at: int) -> None:
    """``--resume`` (the work dir's last checkpoint): the run continues at ``resumed_at + 1`` and its scalars are
    the reference's to the last iteration."""
    proc = _start(_dist_train(name, work, "--resume"), work / "resumed.log")
    out = _finish(proc, work / "resumed.log")
    assert proc.returncode == 0, out[-5000:]
    assert f"Auto resumed from the latest checkpoint {work / f'iter_{resumed_at}.pth'}" in out, out[-5000:]
    steps = _steps(_runs(work)[-1])
    assert [r["iter"] for r in steps] == list(range(resumed_at + 1, LAST_ITER[name] + 1)), out[-5000:]
    _assert_same_steps(steps, ref, "resumed run")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["segmentation", "detection"])
def test_sigkill_then_resume_continues_the_run(name, reference, tmp_path):
    """The whole job (torchrun and both workers) is SIGKILLed once a checkpoint exists; ``--resume`` continues
    the killed run: iteration numbers, lr and losses equal the uninterrupted run's (detection: from a checkpoint
    inside an epoch, which mmengine's epoch loop would train again from the epoch's first batch)."""
    ref = reference(name)
    work = tmp_path / "work"
    proc = _start(_dist_train(name, work), tmp_path / "killed.log")
    _wait(proc, lambda: (work / "last_checkpoint").exists(), "a checkpoint")
    _signal_tree(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    resumed_at = _last_checkpoint(work)
    assert resumed_at < LAST_ITER[name], "killed after the end: nothing left to resume"
    killed = _steps(_runs(work)[0])
    assert [r["iter"] for r in killed] == list(range(1, len(killed) + 1)) and len(killed) >= resumed_at
    _assert_same_steps(killed, ref, "killed run")
    _resume_and_compare(name, work, ref, resumed_at)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["detection", "segmentation"])
def test_sigterm_checkpoints_at_the_next_step_and_resume_continues(name, reference, tmp_path):
    """SIGTERM to the workers after some steps: they finish the step in progress, write iter_<N>.pth and
    last_checkpoint, and exit with 143 (torchrun reports them so, and fails with 1); ``--resume`` continues
    as the uninterrupted run (detection: inside the second epoch)."""
    ref = reference(name)
    work = tmp_path / "work"
    log = tmp_path / "stopped.log"
    proc = _start(_dist_train(name, work), log)
    wait_for = LAST_ITER[name] * 2 // 3  # detection: step 4, the first of the second epoch's 3
    _wait(proc, lambda: _logged_iters(work) >= wait_for, f"iteration {wait_for}")
    before = _logged_iters(work)
    _signal_tree(proc.pid, signal.SIGTERM, workers_only=True)
    after = _logged_iters(work)  # the signal arrived while step after + 1 ran, at the latest
    out = _finish(proc, log)
    stopped = _steps(_runs(work)[0])
    n = stopped[-1]["iter"]
    assert before <= n <= after + 1, f"signalled after step {before}..{after}, stopped after {n}"
    assert n < LAST_ITER[name]
    assert f"SIGTERM: checkpoint {work / f'iter_{n}.pth'} written after iteration {n}; stopping (exit status 143)" \
        in out, out[-5000:]
    assert _last_checkpoint(work) == n
    assert proc.returncode == 1 and len(re.findall(r"exitcode\s+: 143 \(pid", out)) == 2, out[-3000:]
    # the one traceback is torchrun's ChildFailedError report (the statuses above), none is a worker's
    assert out.count("Traceback (most recent call last)") == 1 and "ChildFailedError" in out, out[-5000:]
    _assert_same_steps(stopped, ref, "stopped run")
    _resume_and_compare(name, work, ref, n)


@pytest.mark.slow
def test_sigint_stops_one_process_with_status_130(tmp_path):
    """Without torchrun (``python segmentation/train.py``) the process's own status: 128 + SIGINT after the
    checkpoint; ``--resume`` then runs the remaining iterations."""
    work = tmp_path / "work"
    train = [sys.executable, "segmentation/train.py", SMOKE["segmentation"], "--work-dir", work]
    proc = _start([*train, "--cfg-options", *OPTIONS["segmentation"]], tmp_path / "stopped.log")
    _wait(proc, lambda: _logged_iters(work) >= 2, "iteration 2")
    proc.send_signal(signal.SIGINT)
    out = _finish(proc, tmp_path / "stopped.log")
    n = _steps(_runs(work)[0])[-1]["iter"]
    assert proc.returncode == 130, out[-3000:]
    assert f"SIGINT: checkpoint {work / f'iter_{n}.pth'} written after iteration {n}" in out and "Traceback" not in out
    assert _last_checkpoint(work) == n
    resumed = _start([*train, "--resume", "--cfg-options", *OPTIONS["segmentation"]], tmp_path / "resumed.log")
    out = _finish(resumed, tmp_path / "resumed.log")
    assert resumed.returncode == 0, out[-3000:]
    assert [r["iter"] for r in _steps(_runs(work)[-1])] == list(range(n + 1, LAST_ITER["segmentation"] + 1))
