"""The model zoo (benchmarks/zoo.py and its helpers) and the figures (figures/make_all.py), so neither rots.

End to end: ``python -m benchmarks.zoo --quick`` on two small models (exact params and FLOPs, the paper's
numbers, sane speed and memory, the Markdown table) and ``python figures/make_all.py --check`` (every figure
renders, nothing is written). The pieces with known answers are checked directly: the paper-number lookup,
the downstream-model scan, the peak-memory probe, the report's differences, and the PPMA figures' mask rows
and attention maps against the kernels' references.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from test_flops import OFFICIAL_FLOPS

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "figures"))  # the figure scripts import each other by file name


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _figure_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "figures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------- the zoo
def test_zoo_quick_two_models(tmp_path):
    md, js = tmp_path / "ZOO.md", tmp_path / "zoo.json"
    proc = _run(["-m", "benchmarks.zoo", "--quick", "--threads", "1", "--models", "pacavit_tiny", "p2t_tiny",
                 "--out-md", str(md), "--out-json", str(js)], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(js.read_text())
    rows = {r["model"]: r for r in result["models"]}
    assert list(rows) == ["p2t_tiny", "pacavit_tiny_p2cconv_100_0"]  # table order; the alias resolved
    paca, p2t = rows["pacavit_tiny_p2cconv_100_0"], rows["p2t_tiny"]
    assert paca["aliases"] == ["pacavit_tiny"]
    assert (paca["params"], p2t["params"]) == (12_200_680, 11_590_840)
    # the official code's exact fvcore counts (tests/test_flops.py)
    assert paca["gflops_224"] == pytest.approx(OFFICIAL_FLOPS["pacavit_tiny_p2cconv_100_0"] / 1e9, rel=1e-12)
    assert p2t["gflops_224"] == pytest.approx(OFFICIAL_FLOPS["p2t_tiny"] / 1e9, rel=1e-12)
    assert paca["paper"] == dict(params_m=12.2, gflops=3.2, top1=80.9, source="PaCa-ViT (Grainger et al., CVPR 2023)")
    assert p2t["backbone_gflops"] == {}  # --quick skips the task-size FLOPs
    for r in rows.values():
        for phase in ("infer", "train"):  # images/s of batch 2 = 2 / step time
            assert r[phase]["img_s"] * r[phase]["step_s"] == pytest.approx(2.0)
        assert r["train"]["img_s"] < r["infer"]["img_s"]  # a training step does strictly more work
        assert r["infer"]["peak_mib"] >= 0 and r["train"]["peak_mib"] > r["infer"]["peak_mib"]
    meta = result["meta"]
    assert (meta["batch"], meta["repeats"], meta["threads"], meta["quick"]) == (2, 1, 1, True)
    text = md.read_text()
    assert "python -m benchmarks.zoo --quick" in text and "load average" in text
    assert "| `pacavit_tiny_p2cconv_100_0` = `pacavit_tiny` | 12.20 (12.2, +0.00) | 3.237 (3.2, +0.037) | 80.9 |" in text


def test_zoo_report_differences_and_failures():
    from benchmarks.zoo_report import render_markdown

    meta = dict(command="python -m benchmarks.zoo", date_utc="d", commit="c", wall_s=1.0, batch=8, threads=2,
                image_size=224, dtype="float32", repeats=3, quick=False, loadavg_start=[1.0, 2.0, 3.0],
                loadavg_end=[1.5, 2.0, 3.0], machine=dict(cpu="cpu", cpu_cores=2, python="3", torch="t", timm="m"))
    paper = dict(params_m=14.0, gflops=2.7, top1=82.6, source="PPMA (Zhao et al., NeurIPS 2025)")
    ok = dict(model="ppma_tiny", aliases=[], family="PPMA", paper=paper, params=14_335_272, gflops_224=2.708877,
              infer=dict(img_s=10.0, peak_mib=100.0), train=dict(img_s=3.0, peak_mib=300.0),
              backbone_gflops={"detection": 131.58})
    failed = dict(model="ppma_small", aliases=[], family="PPMA", paper=dict(paper, top1=84.2), error="boom")
    text = render_markdown(dict(meta=meta, models=[ok, failed]))
    assert "| `ppma_tiny` | 14.34 (14, +0.34) | 2.709 (2.7, +0.009) | 82.6 | 10.0 | 100 | 3.0 | 300 | 131.6 | - |" in text
    assert "| `ppma_small` | failed: boom |" in text
    assert "1, 2, 3 at the start, 1.5, 2, 3 at the end" in text


def test_paper_numbers():
    from benchmarks.paper_numbers import PUBLISHED_PARAMS_M, canonical_name, paper_numbers

    import models

    assert canonical_name("pacavit_base") == "pacavit_base_p2cconv_100_0"

    def numbers(model):
        p = paper_numbers(model)
        return p.params_m, p.flops_g, p.top1

    assert numbers("rmt_tiny") == (14.0, 2.5, 82.4)  # RMT's own counter: 2.5 G (fvcore: 2.651 G)
    assert numbers("pacavit_convmixer_tiny_100") == (None, None, None)  # no published row
    assert numbers("spatial_mamba_base") == (96.0, 15.8, 85.3)
    with pytest.raises(KeyError, match="no published numbers"):
        paper_numbers("resnet50")
    # every registered variant has its published numbers
    assert {canonical_name(m) for m in models.list_models()} == set(PUBLISHED_PARAMS_M)


def test_downstream_tasks_scan_the_row_configs():
    from benchmarks.model_costs import downstream_tasks

    tasks = downstream_tasks()
    assert tasks["ppma_tiny"] == ("detection", "segmentation")
    assert tasks["mpvit_tiny"] == ("detection",)  # MPViT-T has no segmentation row
    assert "rmt_tiny" not in tasks and "pacavit_convmixer_tiny_100" not in tasks


def test_step_peak_memory_counts_a_freed_allocation_exactly():
    # what the allocator held at once in a step: a 64 MiB tensor freed before the step ends, with 1 MiB beside it
    from benchmarks.model_speed import time_steps

    def step():
        x = torch.ones(64 * 2**20 // 4)
        y = torch.ones(2**20 // 4)
        del x, y

    times, peak = time_steps(step, repeats=2, device="cpu")
    assert len(times) == 2
    assert peak == 65.0


# ------------------------------------------------------------------------------------------- figures
def test_make_all_check_renders_every_figure():
    proc = _run(["figures/make_all.py", "--check"], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("zoo.png", "training_curves.png", "kernel_scaling.png", "ppma_polyline_masks.png", "ppma_attention.png"):
        assert f"rendered {name}" in proc.stdout, proc.stdout


def test_mask_rows_match_the_bruteforce_mask():
    from kernels.polyline_attention import polyline_mask_bruteforce

    masks = _figure_module("plot_polyline_masks")
    log_a, log_b = -torch.rand(2, 3, 4, dtype=torch.float64), -torch.rand(2, 3, 4, dtype=torch.float64)
    full = polyline_mask_bruteforce(log_a[None], log_b[None])[0, 1]  # head 1
    m, mt = masks.mask_rows(log_a, log_b, head=1, i=2, j=1)
    q = 2 * 4 + 1
    torch.testing.assert_close(m, full[q].view(3, 4))
    torch.testing.assert_close(mt, full[:, q].view(3, 4))


def test_attention_maps_match_the_reference_attention():
    from kernels.polyline_attention import polyline_attention_reference

    attention = _figure_module("plot_masked_attention")
    n, h, w, d = 2, 3, 4, 5
    q, k = torch.randn(n, h, w, d), torch.randn(n, h, w, d)
    log_a, log_b = -torch.rand(n, h, w), -torch.rand(n, h, w)
    plain, masked = attention.attention_maps(dict(q=q, k=k, log_a=log_a, log_b=log_b, mode="full"))
    # attention applied to one-hot values returns the attention weights themselves
    eye = torch.eye(h * w, dtype=torch.float64).view(1, 1, h, w, h * w).expand(1, n, h, w, h * w)
    ref = polyline_attention_reference(q[None].double(), k[None].double(), eye, log_a[None].double(),
                                       log_b[None].double(), "full", 1.0)
    torch.testing.assert_close(masked, ref[0].flatten(1, 2).mean(0))
    torch.testing.assert_close(plain, (q.flatten(1, 2) @ k.flatten(1, 2).transpose(-1, -2)).double().softmax(-1).mean(0))
    with pytest.raises(ValueError, match="full-attention stage"):
        attention.attention_maps(dict(q=q, k=k, log_a=log_a, log_b=log_b, mode="criss_cross"))


def test_kernel_scaling_rejects_a_report_without_kernel_cases():
    scaling = _figure_module("plot_kernel_scaling")
    report = dict(sections=dict(kernels=dict(records=[dict(case="something else", status="ok")])))
    with pytest.raises(ValueError, match="no polyline / scan kernel cases"):
        scaling.gpu_points(report)
    latest = scaling.latest_gpu_report()
    if latest is not None:  # the committed report parses into both series
        poly, scan = scaling.gpu_points(json.loads(latest.read_text()))
        assert {"triton", "dense", "sdpa"} <= set(poly) and {"triton", "torch"} <= set(scan)


def test_training_curves_progress_axis(tmp_path):
    plot_log = _figure_module("plot_training_log")
    records = [dict(epoch=e, train_lr=1e-3, train_loss=2.0 - e / 10, test_loss=2.0, test_acc1=10.0 + e) for e in range(4)]
    assert plot_log._series(records, "test_acc1", progress=True) == ([0.25, 0.5, 0.75, 1.0], [10.0, 11.0, 12.0, 13.0])
    assert plot_log._series(records, "test_acc1") == ([0, 1, 2, 3], [10.0, 11.0, 12.0, 13.0])
