"""GPU compile check of every Triton kernel without a GPU: ``python -m kernels.triton_aot`` compiles each
kernel at its wrapper's launch configurations for sm_80 and sm_90 (Triton's MLIR/LLVM pipeline and the
``ptxas`` shipped in the Triton wheel) and reports registers, spills and shared memory. The interpreter tests
check what the kernels compute; this checks that the GPU compiler accepts them and that they fit (no
register spills, shared memory within the per-block limit)."""
import json
import os
import subprocess
import sys

import pytest

from kernels.triton_aot import toolchain_missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.skipif(toolchain_missing() is not None, reason="Triton's NVIDIA backend (ptxas) is not installed")
def test_every_triton_kernel_compiles_for_sm80_and_sm90_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # (conftest sets it for this process)
    proc = subprocess.run([sys.executable, "-m", "kernels.triton_aot", "--arch", "80,90", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows, f"no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    bad = [r for r in rows if not r["ok"] or r["problems"]]
    assert not bad, "\n".join(f"sm_{r['arch']} {r['name']}: {r.get('error') or '; '.join(r['problems'])}" for r in bad)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {r["name"].split(" ")[0] for r in rows}
    assert names == {"selective_scan.fwd", "selective_scan.bwd", "polyline.fwd", "polyline.bwd", "polyline.rows.fwd",
                     "polyline.rows.bwd"}, names
    assert {r["arch"] for r in rows} == {80, 90}
