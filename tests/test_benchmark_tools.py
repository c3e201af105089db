"""The tools that measure against the official code: staging its files for a machine without network
(``tools/official_models.py --stage``) and the step ``benchmarks/bench_models.py`` times. No official code needed."""
import os
import sys

import pytest
import torch
from torch import nn

from benchmarks import bench_models, memory

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import official_models  # noqa: E402


def _touch(path, text="x = 1\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_stage_copies_what_the_importer_reads_and_nothing_else(tmp_path):
    root, out = tmp_path / "official", tmp_path / "staged"
    wanted = ["PPMA/classification/models/PPMA.py", "PPMA/classification/models/RMT.py", "P2T/p2t.py",
              "PaCaViT/models/__init__.py", "PaCaViT/models/paca_vit.py", "PaCaViT/models/layers/blur_pool.py"]
    others = ["PPMA/classification/main.py", "PPMA/README.md", "P2T/segmentation/p2t.py",
              "PaCaViT/models/__pycache__/paca_vit.cpython-311.pyc", "PaCaViT/train.py"]
    for rel in wanted + others:
        _touch(root / rel)
    copied = official_models.stage(root, out)
    # MPViT and Spatial-Mamba are not checked out here: left out, not an error
    assert copied == ["PPMA/classification/models/PPMA.py", "PPMA/classification/models/RMT.py", "P2T/p2t.py",
                      "PaCaViT/models"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(wanted)
    # a checkout without a file the importer reads is named
    (root / "P2T/p2t.py").unlink()
    with pytest.raises(SystemExit, match="p2t.py is missing"):
        official_models.stage(root, tmp_path / "again")


class _AutocastProbe(nn.Module):
    """A classifier that records whether its forward ran under CPU autocast, and in which dtype."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1000)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("amp, dtype", [(None, None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_bench_step_runs_the_forward_under_the_requested_autocast(mode, amp, dtype):
    model = _AutocastProbe()
    bench_models._step_fn(model, mode, 2, (4, 5), torch.device("cpu"), amp)()
    assert model.seen == [dtype]
    if mode == "train":
        assert model.fc.weight.grad is None  # the step clears what its backward accumulated


class _HalvesProduct(nn.Module):
    def forward(self, h):
        return h[:, :2] * h[:, 2:]  # saves two views of h: other tensors, h's storage


def test_saved_activation_bytes_counts_each_saved_storage_once_without_parameters():
    # Linear(3, 4) saves its input x (2 x 3 fp32: 24 bytes), ReLU its output h (2 x 4: 32 bytes), the product two
    # views of h (the same storage: once), the last Linear its input (2 x 2: 16 bytes) and its weight (a
    # parameter: left out)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _HalvesProduct(), nn.Linear(2, 5))
    x = torch.randn(2, 3)
    assert bench_models.saved_activation_bytes(model, lambda: model(x).sum().backward()) == 24 + 32 + 16
    assert model[0].weight.grad is not None  # the step itself ran, backward included


def test_allocator_peak_bytes_is_the_most_held_at_once_above_the_start():
    held = torch.empty(2**18)  # held before: not counted

    def fn():
        a = torch.empty(2**18)  # 1 MiB
        b = torch.empty(2**19)  # 2 MiB, with a: the peak
        del a, b
        c = torch.empty(2**19)  # 2 MiB alone: below it
        return c

    assert memory.allocator_peak_bytes(fn) == 3 * 2**20
    assert held.numel() == 2**18


def test_model_kwargs_parse_and_reach_the_child_unchanged():
    # --model-kwargs KEY=VALUE: Python literals, bare words as strings; the child gets them back as repr()s
    import argparse

    ap = argparse.ArgumentParser()
    kwargs = bench_models._parse_kwargs(ap, ["ffn_recompute=True", "attn_impl=cpp", "drop_path_rate=0.2",
                                             "mlp_ratios=(2, 2, 2, 2)"])
    assert kwargs == dict(ffn_recompute=True, attn_impl="cpp", drop_path_rate=0.2, mlp_ratios=(2, 2, 2, 2))
    assert bench_models._parse_kwargs(ap, [f"{k}={v!r}" for k, v in kwargs.items()]) == kwargs
    with pytest.raises(SystemExit):
        bench_models._parse_kwargs(ap, ["ffn_recompute"])


def test_keep_freed_memory_reaches_both_codes_processes(monkeypatch):
    """--keep-freed-memory: every child is started with it (ours and the official alike), and a child calls
    kernels.cpu_allocator.keep_freed_memory before it builds its model."""
    import argparse
    import subprocess
    import types

    import kernels.cpu_allocator

    args = argparse.Namespace(
        size="96", batch=1, threads=1, repeats=1, device="cpu", grad_checkpointing=None, amp=None,
        keep_freed_memory=True, model_kwargs={}, official_root="/official", pylib=None, weights=None, hw=(96, 96))
    cmds = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: cmds.append(cmd) or types.SimpleNamespace(
        returncode=0, stdout='{"img_s": 1.0}\n', stderr=""))
    for impl in ("official", "ours"):
        bench_models._child(args, impl, "p2t_tiny", "infer", None)
    assert [c.count("--keep-freed-memory") for c in cmds] == [1, 1]
    monkeypatch.undo()

    order = []
    monkeypatch.setattr(kernels.cpu_allocator, "keep_freed_memory", lambda: order.append("keep") or "")
    real_build = bench_models.build
    monkeypatch.setattr(bench_models, "build", lambda *a, **k: order.append("build") or real_build(*a, **k))
    out = bench_models.run_case(args, "ours", "p2t_tiny", "infer")
    assert order == ["keep", "build"] and out["img_s"] > 0
