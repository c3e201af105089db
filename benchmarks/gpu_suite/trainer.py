"""Section 5, the classification trainer on the device, run as a user runs it (torchrun, embedded data):
fp16 AMP (GradScaler) with channels_last stopped after one epoch and resumed for the second; bf16 AMP with
channels_last and ``--torchcompile``; and a one-process NCCL group with DDP around a model with the custom ops.
Every run must exit 0 with finite losses in its ``log.txt``."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import warnings

import torch

from .common import Section

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _trainer(out_dir: pathlib.Path, flags: list[str], device, log) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(ROOT / "classification" / "main.py"), "--output-dir", str(out_dir), "--device", device.type, *flags]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log.write(f"$ {' '.join(cmd)}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}\n")
    log.flush()
    return p.returncode, p.stdout + p.stderr


def _data_flags(smoke: bool, work: pathlib.Path) -> list[str]:
    """Full: the embedded default dataset with its preset (100 updates per epoch at batch 16). Smoke: a
    4-class, 32 px ImageFolder given by --data-path, 4 updates per epoch (the trainer as on real data)."""
    if not smoke:
        return []
    from classification.embedded_data import ensure_embedded_dataset

    root = ensure_embedded_dataset(work / "tiny_data", num_classes=4, train_per_class=8, val_per_class=4,
                                   image_size=32)
    return ["--data-path", str(root), "--input-size", "32", "--batch-size", "8", "--num-workers", "0",
            "--no-pin-mem", "--no-repeated-aug", "--mixup", "0", "--cutmix", "0", "--warmup-epochs", "0"]


def _epochs(out_dir: pathlib.Path) -> list[dict]:
    path = out_dir / "log.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _summary(rc: int, text: str, out_dir: pathlib.Path, want_epochs: int) -> dict:
    logs = _epochs(out_dir)
    losses = [e["train_loss"] for e in logs]
    ok = rc == 0 and len(logs) == want_epochs and all(map(lambda x: x == x and abs(x) < 1e6, losses))
    rec = {"rc": rc, "epochs_logged": len(logs), "train_loss": [round(x, 4) for x in losses],
           "test_acc1": [round(e.get("test_acc1", float("nan")), 2) for e in logs], "status": "ok" if ok else "fail"}
    if rc != 0:
        rec["note"] = text.strip().splitlines()[-1][:300] if text.strip() else f"exit {rc}"
    return rec


def amp_resume(device, smoke: bool, work: pathlib.Path, log) -> dict:
    """fp16 AMP + channels_last, two epochs in two invocations (the second resumes from checkpoint.pth)."""
    model = "ppma_tiny" if smoke else "spatial_mamba_tiny"  # (on CPU fp16 AMP falls back to fp32: same flags)
    amp = "float16"
    flags = ["--model", model, "--amp", "--amp-dtype", amp, "--channels-last", "--epochs", "2",
             "--max-epochs-this-run", "1"] + _data_flags(smoke, work)
    out = work / "amp_resume"
    rc, text = _trainer(out, flags, device, log)
    if rc != 0:
        return _summary(rc, text, out, 2)
    rc, text = _trainer(out, flags + ["--resume", "auto"], device, log)
    rec = _summary(rc, text, out, 2)
    rec["resumed"] = "resumed from" in text
    if not rec["resumed"]:
        rec["status"] = "fail"
    return {"model": model, "amp": amp, **rec}


def compiled(device, smoke: bool, backend: str, work: pathlib.Path, log) -> dict:
    amp = "float16" if smoke else "bfloat16"  # bf16 autocast on a CPU without bf16 units is emulated: slow
    flags = ["--model", "ppma_tiny", "--amp", "--amp-dtype", amp, "--channels-last", "--torchcompile",
             backend, "--epochs", "1"] + _data_flags(smoke, work)
    out = work / "compiled"
    rc, text = _trainer(out, flags, device, log)
    return {"model": "ppma_tiny", "amp": amp, "backend": backend, **_summary(rc, text, out, 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_group(device) -> dict:
    """A one-process NCCL (gloo on CPU) group: an all-reduce, then a DDP step of PPMA-T (custom ops inside)."""
    import timm
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import models  # noqa: F401  (registers the backbones)

    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group(backend, rank=0, world_size=1, **({"device_id": device} if backend == "nccl" else {}))
    try:
        t = torch.arange(4.0, device=device)
        dist.all_reduce(t)
        model = timm.create_model("ppma_tiny", num_classes=10).to(device)
        ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        x = torch.randn(4, 3, 64, 64, device=device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ddp(x).logsumexp(-1).mean().backward()
        finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        strides = [str(w.message)[:120] for w in caught if "stride" in str(w.message).lower()]
        return {"backend": backend, "all_reduce": t.tolist(), "grads_finite": bool(finite),
                "grad_stride_warnings": len(strides), "note": strides[0] if strides else "",
                "status": "ok" if finite and t.tolist() == [0.0, 1.0, 2.0, 3.0] else "fail"}
    finally:
        dist.destroy_process_group()


def run(sec: Section, compile_backend: str, log_path: str) -> None:
    dev = sec.device
    with tempfile.TemporaryDirectory(prefix="gpu_suite_trainer_") as tmp, open(log_path, "a") as log:
        work = pathlib.Path(tmp)
        sec.run("trainer: AMP + channels_last, 2 epochs with a resume", lambda: amp_resume(dev, sec.smoke, work, log))
        sec.run(f"one-process {'NCCL' if dev.type == 'cuda' else 'gloo'} group + DDP step", lambda: ddp_group(dev))
        sec.run(f"trainer: bf16 AMP + channels_last + --torchcompile {compile_backend}",
                lambda: compiled(dev, sec.smoke, compile_backend, work, log))
