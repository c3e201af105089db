"""The scripts of detection/ and segmentation/, tested once for both (they are one code, openmmlab.tools).

- both folders' ``train.py`` / ``test.py`` take the same flags (mmdet's / mmseg's ``tools/`` flags), with the
  same behaviour: config names, work dirs, ``--cfg-options``, ``--resume``, ``--amp`` on CPU, ``--tta``,
  ``--show-dir``, ``--out``, ``--local-rank``, strict checkpoint loading;
- the dist / slurm scripts check their arguments and build the launcher's command line;
- slow: a 2-image ``test.py --tta --show-dir`` run, and a 2-process ``dist_train.sh`` -> ``dist_test.sh``
  round trip whose test metrics equal the last validation metrics of the training run.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402

from models import CheckpointMismatchError  # noqa: E402
from openmmlab.launch import replace_sync_bn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = ("detection", "segmentation")
SMOKE = {"detection": "configs/detection/smoke/mask-rcnn_p2t_smoke.py",
         "segmentation": "configs/segmentation/smoke/upernet_p2t_smoke.py"}
TTA_SMOKE = {"detection": "configs/detection/smoke/retinanet_p2t_smoke.py",  # DetTTAModel merges boxes only
             "segmentation": "configs/segmentation/smoke/upernet_p2t_smoke.py"}
TTA_MODEL = {"detection": "DetTTAModel", "segmentation": "SegTTAModel"}
EMBEDDED = {"detection": "EMBEDDED_COCO_ROOT", "segmentation": "EMBEDDED_ADE_ROOT"}


@pytest.fixture(autouse=True)
def _embedded_roots(tmp_path_factory, monkeypatch):
    """Embedded datasets in a temporary directory (generated once per session), never in the repository."""
    root = tmp_path_factory.getbasetemp() / "embedded"
    monkeypatch.setenv("EMBEDDED_COCO_ROOT", str(root / "embedded_coco"))
    monkeypatch.setenv("EMBEDDED_ADE_ROOT", str(root / "embedded_ade"))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def _task(name):
    return importlib.import_module(f"{name}.task").TASK


def _tool(name, tool):
    """The tool module of ``openmmlab.tools`` and the task folder's entry point, which must be its main."""
    entry = importlib.import_module(f"{name}.{tool}").main
    shared = importlib.import_module(f"openmmlab.tools.{tool}")
    assert entry.func is shared.main and entry.args == (_task(name),)
    return shared


def _train_cfg(name, *argv):
    tool = _tool(name, "train")
    task = _task(name)
    return tool.build_cfg(task, tool.parse_args(task, list(argv)))


def _test_cfg(name, *argv):
    tool = _tool(name, "test")
    task = _task(name)
    return tool.build_cfg(task, tool.parse_args(task, list(argv)))


def _flags(name, tool, capsys) -> set[str]:
    with pytest.raises(SystemExit):
        _tool(name, tool).parse_args(_task(name), ["--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z_-]*", capsys.readouterr().out))


# ---------------------------------------------------------------------------------------------- flags
COMMON = {"--help", "--work-dir", "--cfg-options", "--launcher", "--local_rank", "--local-rank"}


@pytest.mark.parametrize("name", TASKS)
def test_the_same_flags_as_the_openmmlab_tools(name, capsys):
    extra_train = {"--auto-scale-lr"} if name == "detection" else set()  # mmseg's train.py has none
    extra_test = {"--aug-test"} if name == "segmentation" else set()      # mmseg 0.x's name of --tta
    assert _flags(name, "train", capsys) == COMMON | {"--resume", "--amp"} | extra_train
    assert _flags(name, "test", capsys) == COMMON | {"--out", "--show", "--show-dir", "--wait-time",
                                                     "--tta"} | extra_test
    assert _flags(name, "get_flops", capsys) == {"--help", "--shape", "--cfg-options", "--show-unsupported"}


@pytest.mark.parametrize("name", TASKS)
def test_config_names_resolve_the_same_way(name):
    from openmmlab.configs import config_aliases, resolve_config

    task = _task(name)
    smoke = REPO / SMOKE[name]
    for given in ("smoke", smoke.stem, f"{smoke.stem}.py", str(smoke), SMOKE[name]):
        assert resolve_config(given, task.config_dir).resolve() == smoke, given
    old_names = {"detection": {}, "segmentation": {  # documented before the mmseg 1.x renames
        "upernet_smoke": "smoke/upernet_p2t_smoke.py",
        "upernet_ppma_tiny_512x512_160k_ade20k": "ppma/upernet_ppma-tiny_8xb2-160k_ade20k-512x512.py",
        "fpn_p2t_tiny_512x512_80k_ade20k.py": "p2t/fpn_p2t-tiny_8xb2-80k_ade20k-512x512.py",
        "configs/segmentation/pacavit/pacahead_pacavit_small_p2cconv_100_0_512x512_160k_ade20k.py":
            "pacavit/pacahead_pacavit-small-p2cconv-100-0_8xb2-160k_ade20k-512x512.py"}}[name]
    for old, new in old_names.items():
        assert resolve_config(old, task.config_dir) == task.config_dir / new, old
    assert all(p.is_file() for p in config_aliases(task.config_dir).values())
    with pytest.raises(FileNotFoundError, match="no config or alias of that name"):
        resolve_config("no_such_config", task.config_dir)


@pytest.mark.parametrize("name, config, ours, paper", [
    ("detection", "retinanet_p2t-tiny_fpn_1x_coco", "params 21.10 M (backbone 11.21 M)", "paper 21.1 M / 206 G"),
    ("segmentation", "fpn_p2t_tiny_512x512_80k_ade20k",  # an old name
     "params 15.41 M (backbone 11.21 M)", "paper 15.4 M / 31.6 G (512x512)")], ids=TASKS)
def test_get_flops_prints_ours_next_to_the_papers(name, config, ours, paper, capsys):
    (result,) = _tool(name, "get_flops").main(_task(name), [config, "--shape", "128", "160"])
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(f"{config} | {ours} | FLOPs ") and line.endswith(paper), line
    assert result["flops"] > 1e8


@pytest.mark.parametrize("name", TASKS)
def test_train_flags(name, tmp_path, monkeypatch):
    cfg = _train_cfg(name, "smoke", "--work-dir", str(tmp_path / "w"), "--cfg-options", "default_hooks.logger.interval=7")
    assert cfg.work_dir == str(tmp_path / "w") and cfg.default_hooks.logger.interval == 7
    assert not cfg.get("resume") and cfg.get("load_from") is None
    assert cfg.launcher == "none" and cfg.env_cfg.dist_cfg.backend == ("nccl" if torch.cuda.is_available() else "gloo")
    assert _train_cfg(name, "smoke").work_dir == os.path.join("./work_dirs", Path(SMOKE[name]).stem)

    cfg = _train_cfg(name, "smoke", "--resume")  # the latest checkpoint of the work dir
    assert cfg.resume is True and cfg.load_from is None
    ckpt = tmp_path / "iter_3.pth"
    ckpt.write_bytes(b"")
    cfg = _train_cfg(name, "smoke", "--resume", str(ckpt))
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    with pytest.raises(SystemExit, match="--resume: checkpoint not found: .*missing.pth"):
        _train_cfg(name, "smoke", "--resume", str(tmp_path / "missing.pth"))

    if torch.cuda.is_available():
        assert _train_cfg(name, "smoke", "--amp").optim_wrapper.type == "AmpOptimWrapper"
    else:
        with pytest.raises(SystemExit, match="--amp needs a CUDA GPU"):
            _train_cfg(name, "smoke", "--amp")
    if name == "detection":
        assert _train_cfg(name, "smoke", "--auto-scale-lr").auto_scale_lr.enable is True
    with pytest.raises(SystemExit):
        _train_cfg(name, "smoke", "--launcher", "torchrun")

    _tool(name, "train").parse_args(_task(name), ["smoke", "--local-rank", "1"])
    assert os.environ["LOCAL_RANK"] == "1"


@pytest.mark.parametrize("name", TASKS)
def test_test_flags(name, tmp_path):
    with pytest.raises(SystemExit, match="checkpoint not found"):
        _test_cfg(name, SMOKE[name], str(tmp_path / "missing.pth"))
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"")  # build_cfg does not read it
    plain = Config.fromfile(str(REPO / TTA_SMOKE[name]))
    if not torch.cuda.is_available():  # as setup_device does on CPU
        replace_sync_bn(plain.model)
    cfg = _test_cfg(name, TTA_SMOKE[name], str(ckpt), "--tta", "--show-dir", "vis", "--wait-time", "0.5")
    assert cfg.load_from == str(ckpt) and cfg.resume is False
    assert cfg.model.type == TTA_MODEL[name] and cfg.model.module == plain.model
    assert cfg.test_dataloader.dataset.pipeline == plain.tta_pipeline
    hook = cfg.default_hooks.visualization
    assert hook.draw is True and hook.test_out_dir == "vis" and hook.wait_time == 0.5 and hook.show is False
    assert hook.type == ("DetVisualizationHook" if name == "detection" else "SegTestVisualizationHook")

    if name == "detection":
        with pytest.raises(SystemExit, match="merges boxes only"):
            _test_cfg(name, SMOKE[name], str(ckpt), "--tta")
        cfg = _test_cfg(name, SMOKE[name], str(ckpt), "--out", str(tmp_path / "preds.pkl"))
        assert cfg.test_evaluator[-1] == dict(type="DumpDetResults", out_file_path=str(tmp_path / "preds.pkl"))
        with pytest.raises(SystemExit, match="--out must be a .pkl file"):
            _test_cfg(name, SMOKE[name], str(ckpt), "--out", str(tmp_path / "preds"))
    else:
        assert _test_cfg(name, SMOKE[name], str(ckpt), "--aug-test").model.type == "SegTTAModel"
        cfg = _test_cfg(name, SMOKE[name], str(ckpt), "--out", str(tmp_path / "preds"))
        assert cfg.test_evaluator.output_dir == str(tmp_path / "preds") and cfg.test_evaluator.keep_results


def _save_model(name, config, path, drop=None):
    """A checkpoint of the config's (randomly initialised) model, optionally without one key."""
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(str(REPO / config))
    replace_sync_bn(cfg.model)
    scope = _task(name).scope
    init_default_scope(scope)
    model = importlib.import_module(f"{scope}.registry").MODELS.build(cfg.model)
    model.init_weights()
    state = model.state_dict()
    if drop:
        state.pop(drop)
    torch.save({"state_dict": state, "meta": {}}, path)


@pytest.mark.parametrize("name", TASKS)
def test_test_script_refuses_a_partial_checkpoint(name, tmp_path):
    key = {"detection": "roi_head.mask_head.conv_logits.weight", "segmentation": "decode_head.conv_seg.weight"}[name]
    _save_model(name, SMOKE[name], tmp_path / "partial.pth", drop=key)
    with pytest.raises(CheckpointMismatchError, match=rf"missing keys \(1\): {re.escape(key)}"):
        _tool(name, "test").main(_task(name), [SMOKE[name], str(tmp_path / "partial.pth"),
                                               "--work-dir", str(tmp_path / "work"), "--launcher", "none"])


# ---------------------------------------------------------------------------------------- launch scripts
def _bash(script, *args, env=None, cwd=REPO):
    return subprocess.run(["bash", str(REPO / script), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.parametrize("name", TASKS)
def test_dist_scripts_check_their_arguments(name, tmp_path):
    train, test = f"{name}/dist_train.sh", f"{name}/dist_test.sh"
    cases = [
        (train, [SMOKE[name]], {}, "expected 2 arguments, got 1"),
        (train, [SMOKE[name], "two"], {}, "NUM_PROCS must be a positive integer, got 'two'"),
        (train, [SMOKE[name], "0"], {}, "NUM_PROCS must be a positive integer"),
        (train, [SMOKE[name], "2"], {"NNODES": "2", "NODE_RANK": "2"}, r"NODE_RANK must be in \[0, NNODES=2\)"),
        (train, [SMOKE[name], "2"], {"PORT": "http"}, "PORT must be a TCP port number"),
        (test, [SMOKE[name], "2"], {}, "expected 3 arguments, got 2"),
        (test, [SMOKE[name], tmp_path / "missing.pth", "2"], {}, "checkpoint not found: .*missing.pth"),
    ]
    for script, args, env, message in cases:
        res = _bash(script, *args, env=env)
        assert res.returncode == 2, (script, args, res.stdout, res.stderr)
        assert re.search(f"{re.escape(script)}: {message}", res.stderr), res.stderr
        assert f"usage: bash {script}" in res.stderr


@pytest.mark.parametrize("name", TASKS)
def test_slurm_scripts_run_srun_as_openmmlab_does(name, tmp_path):
    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {tmp_path}/srun_args\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "GPUS": "8", "GPUS_PER_NODE": "4",
           "SRUN_ARGS": "--quotatype=auto"}  # two nodes of 4 GPUs
    res = _bash(f"{name}/slurm_train.sh", "gpu", "job", SMOKE[name], "work", "--cfg-options", "a=1", env=env)
    assert res.returncode == 0, res.stderr
    args = (tmp_path / "srun_args").read_text().splitlines()
    assert args == ["-p", "gpu", "--job-name=job", "--gres=gpu:4", "--ntasks=8", "--ntasks-per-node=4",
                    "--cpus-per-task=5", "--kill-on-bad-exit=1", "--quotatype=auto", "python", "-u",
                    f"{REPO}/{name}/train.py", SMOKE[name], "--work-dir=work", "--launcher=slurm", "--cfg-options",
                    "a=1"]
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"")
    res = _bash(f"{name}/slurm_test.sh", "gpu", "job", SMOKE[name], ckpt, "--tta", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "srun_args").read_text().splitlines()[-6:] == [
        "-u", f"{REPO}/{name}/test.py", SMOKE[name], str(ckpt), "--launcher=slurm", "--tta"]
    res = _bash(f"{name}/slurm_test.sh", "gpu", "job", SMOKE[name], env=env)
    assert res.returncode == 2 and f"usage: bash {name}/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT" in res.stderr


# ------------------------------------------------------------------------------------------ end to end
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PORT=str(_free_port()),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("TRITON_INTERPRET", None)
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res.stdout + res.stderr


def _records(work_dir: Path, run: str) -> list[dict]:
    """mmengine's json log of the latest run (training: <ts>/vis_data/<ts>.json, test: <ts>/<ts>.json)."""
    ts = sorted(p.name for p in work_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d{8}_\d{6}", p.name))[-1]
    path = work_dir / ts / ("vis_data" if run == "train" else "") / f"{ts}.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_tta_and_show_dir_on_two_images(name, tmp_path):
    _save_model(name, TTA_SMOKE[name], tmp_path / "model.pth")
    _run([sys.executable, f"{name}/test.py", TTA_SMOKE[name], tmp_path / "model.pth", "--tta", "--show-dir", "vis",
          "--work-dir", tmp_path / "work", "--cfg-options", "test_dataloader.dataset.indices=2"], tmp_path)
    drawn = list((tmp_path / "work").glob("*/vis/*.jpg"))
    assert len(drawn) == 2 and all(p.stat().st_size > 1000 for p in drawn), drawn
    metrics = _records(tmp_path / "work", "test")[-1]
    assert ("coco/bbox_mAP" if name == "detection" else "mIoU") in metrics, metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_dist_train_then_dist_test_two_processes(name, tmp_path):
    """2 processes (gloo on CPU) train on the embedded data, the checkpoint is evaluated by 2 processes, and the
    test metrics equal the validation metrics at the end of training (the checkpoint is the trained model)."""
    work = tmp_path / "work"
    # detection: 8 of the 24 training images (2 steps per process) keep the CPU time down
    fewer = ["--cfg-options", "train_dataloader.dataset.indices=8"] if name == "detection" else []
    out = _run(["bash", f"{name}/dist_train.sh", SMOKE[name], "2", "--work-dir", work, *fewer], tmp_path)
    if not torch.cuda.is_available():
        assert "CPU allocator: freed memory kept in the process" in out
    ckpt = max(work.glob("*.pth"), key=lambda p: p.stat().st_mtime)
    key = "coco/bbox_mAP" if name == "detection" else "mIoU"
    val = [r for r in _records(work, "train") if key in r][-1]
    out = _run(["bash", f"{name}/dist_test.sh", SMOKE[name], ckpt, "2", "--work-dir", work], tmp_path)
    assert "all keys matched" in out
    test = _records(work, "test")
    assert len(test) == 1, "the metrics file is written once, by rank 0"
    metrics = {k: v for k, v in test[0].items() if k in val and k not in ("step", "data_time", "time")}
    assert key in metrics and len(metrics) >= 3, sorted(test[0])
    for k, v in metrics.items():
        assert v == pytest.approx(val[k], abs=1e-6), k
    if name == "segmentation":
        assert val["mIoU"] > 20.0  # 4 classes, 40 iterations: sky / ground are learnt
