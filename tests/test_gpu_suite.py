"""The GPU suite (``benchmarks/gpu_suite``): its parts on CPU, that its checks can fail, and the whole suite end to
end in ``--smoke`` mode (the same code as on a GPU, on CPU at tiny sizes)."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from benchmarks.gpu_suite import correctness, report
from benchmarks.gpu_suite.__main__ import SECTIONS
from benchmarks.gpu_suite.common import Section, Skip, judge, rel_err

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _section(tmp_path, budget=60.0):
    return Section("t", str(tmp_path / "t.jsonl"), budget, torch.device("cpu"), smoke=True)


def test_section_records_results_errors_skips_and_the_budget(tmp_path):
    sec = _section(tmp_path)
    sec.run("fine", lambda: {"x": 1.5})
    sec.run("broken", lambda: 1 / 0)

    def not_here():
        raise Skip("CUDA only")

    sec.run("skipped", not_here)
    sec.budget_s = 0.0
    assert sec.run("late", lambda: {"x": 2}) is None
    recs = report.read_records(sec.path)
    assert [(r["case"], r["status"]) for r in recs] == [("fine", "ok"), ("broken", "error"), ("skipped", "skip"),
                                                        ("late", "skip")]
    assert recs[0]["x"] == 1.5
    assert recs[1]["note"] == "ZeroDivisionError: division by zero" and "traceback" in recs[1]
    assert recs[2]["note"] == "CUDA only" and recs[3]["note"] == "section time budget spent"


def test_relative_error_and_verdict():
    ref = torch.tensor([3.0, 4.0])
    assert rel_err(torch.tensor([3.0, 4.5]), ref) == pytest.approx(0.1)
    assert rel_err(torch.tensor([3.0, float("nan")]), ref) == math.inf
    assert judge({"a": 1e-5, "b": 2e-4}, 1e-4) == {"max_rel": "2.0e-04", "tol": "1e-04", "status": "fail"}
    assert judge({"a": 1e-5}, 1e-4)["status"] == "ok"


def test_report_groups_records_by_their_fields_and_counts_statuses():
    recs = [{"case": "a", "ms": 1.0, "status": "ok"}, {"case": "b", "status": "skip", "note": "budget"},
            {"case": "c", "ms": 2.0, "status": "ok"}, {"case": "r", "ratio": 3.0, "status": "fail"}]
    rep = {"meta": {"device": "cpu"}, "sections": {"k": {"title": "2. Kernels", "doc": "doc", "state": "finished",
                                                         "budget_s": 5, "wall_s": 1.0, "records": recs}}}
    md = report.render_markdown(rep)
    assert report.counts(recs) == {"ok": 2, "fail": 1, "error": 0, "oom": 0, "skip": 1}
    assert "| 2. Kernels | finished | 1.0 / 5 | 2 | 1 | 0 | 0 | 1 |" in md
    assert "| case | ms | status | note |" in md and "| case | ratio | status |" in md  # two tables
    assert [len(g) for g in report._groups(recs)] == [3, 1]


def test_polyline_check_fails_when_the_triton_output_is_wrong(monkeypatch):
    """The correctness section must be able to fail: one planted error in one gradient is caught."""
    from kernels.polyline_attention import triton_impl

    ok = correctness.polyline_case(3, 5, 8, torch.float32, torch.device("cpu"))
    assert ok["status"] == "ok" and float(ok["max_rel"]) < 1e-5

    real_bwd = triton_impl.triton_full_backward

    def planted(*args, **kwargs):
        dq, dk, dv, dla, dlb = real_bwd(*args, **kwargs)
        return dq, dk, dv, dla * 1.01, dlb
    monkeypatch.setattr(triton_impl, "triton_full_backward", planted)
    bad = correctness.polyline_case(3, 5, 8, torch.float32, torch.device("cpu"))
    assert bad["status"] == "fail" and float(bad["triton"]["dlog_a"]) > 5e-3


def test_scan_check_fails_when_a_gradient_is_wrong(monkeypatch):
    from kernels.selective_scan import chunked

    ok = correctness.scan_case(2, 3, 2, 11, torch.float32, torch.device("cpu"))
    assert ok["status"] == "ok"
    real = chunked.selective_scan_chunked_bwd_dt

    def planted(*args, **kwargs):
        grads = list(real(*args, **kwargs))
        grads[3] = grads[3] * 1.01  # dB
        return tuple(grads)
    # the op's backward looks the function up in its package (kernels.selective_scan, shadowed on `kernels` by
    # the function of the same name)
    monkeypatch.setattr(sys.modules["kernels.selective_scan"], "selective_scan_chunked_bwd_dt", planted)
    assert correctness.scan_case(2, 3, 2, 11, torch.float32, torch.device("cpu"))["status"] == "fail"


@pytest.mark.slow
@pytest.mark.triton
def test_smoke_run_end_to_end(tmp_path):
    """`python -m benchmarks.gpu_suite --smoke`: every section finishes on CPU, every check passes, and the
    report names every section."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the suite sets it for its children
    # budgets x4: the sections' smoke budgets are sized for an idle 2-core machine; a loaded one must not fail
    # the test, a hang still does (the whole run is bounded by the timeout)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--out", str(tmp_path),
                           "--budget-scale", "4"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert list(rep["sections"]) == list(SECTIONS)
    for name, sec in rep["sections"].items():
        assert sec["state"] == "finished", (name, sec["state"])
        c = report.counts(sec["records"])
        assert c["fail"] == c["error"] == c["oom"] == 0, (name, [r for r in sec["records"] if r["status"] != "ok"])
        assert c["ok"] > 0, name
    cases = [r["case"] for r in rep["sections"]["correctness"]["records"]]
    assert any(c.startswith("polyline full") for c in cases) and any(c.startswith("scan") for c in cases)
    assert any(c.startswith("model ") for c in cases) and any(c.startswith("state fusion") for c in cases)
    trainer = {r["case"]: r for r in rep["sections"]["trainer"]["records"]}
    resumed = next(r for c, r in trainer.items() if "resume" in c)
    assert resumed["resumed"] is True and resumed["epochs_logged"] == 2
    md = (tmp_path / "gpu_suite.md").read_text()
    for title, *_ in SECTIONS.values():
        assert f"## {title}" in md
