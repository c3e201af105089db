"""Ahead-of-time compile of every Triton kernel for NVIDIA GPUs, on any machine (no GPU, no CUDA driver).

The interpreter (``TRITON_INTERPRET=1``) checks what the kernels compute, but it accepts programs that the
GPU compiler rejects and it says nothing about registers or shared memory. This module compiles each kernel,
at the launch configurations its wrapper uses (each ``triton_impl`` module lists them in ``aot_configs()``),
for real GPU targets with Triton's own toolchain (MLIR -> LLVM -> PTX -> ``ptxas``, shipped in the Triton
wheel), and reads the registers and spills from ``ptxas``'s report::

    python -m kernels.triton_aot                 # sm_80 and sm_90: registers, spills, shared memory
    python -m kernels.triton_aot --arch 90 --json

A kernel that fails to compile, spills more registers to local memory than its configuration allows
(``max_spill``: zero unless a configuration was chosen by measured speed despite a small spill), or needs more
shared memory than the target has per block is reported (exit status 1). Must run without ``TRITON_INTERPRET`` (the decorator then
builds interpreted functions, which cannot be compiled); ``tests/test_triton_aot.py`` runs it in a child
process.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time

__all__ = ["compile_config", "all_configs", "toolchain_missing", "SHARED_LIMIT"]

# largest dynamic shared memory per block (bytes) by compute capability
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}


def toolchain_missing() -> str | None:
    """None when Triton's NVIDIA backend and its ptxas are installed, else why not."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        path = get_ptxas(90).path
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None if os.path.exists(path) else f"no ptxas at {path}"


def _signature(kernel, ptr_dtypes: dict, scalar_types: dict) -> dict:
    """Triton signature from the kernel's parameter names: ``*_ptr`` -> pointer (fp32 unless named in
    ``ptr_dtypes``), constexpr parameters -> ``constexpr``, other scalars -> i32 unless in ``scalar_types``."""
    sig = {}
    for p in kernel.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
        elif p.name.endswith("_ptr"):
            sig[p.name] = "*" + ptr_dtypes.get(p.name, "fp32")
        else:
            sig[p.name] = scalar_types.get(p.name, "i32")
    return sig


def _ptxas_numbers(log: str) -> dict:
    get = lambda pattern: int(m.group(1)) if (m := re.search(pattern, log)) else 0
    return dict(regs=get(r"Used (\d+) registers"), spill_stores=get(r"(\d+) bytes spill stores"),
                spill_loads=get(r"(\d+) bytes spill loads"))


def compile_config(cfg: dict, arch: int) -> dict:
    """Compiles one configuration (see ``aot_configs()`` of the ``triton_impl`` modules) for ``sm_<arch>``."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = cfg["kernel"]
    src = ASTSource(fn=kernel, signature=_signature(kernel, cfg.get("ptr_dtypes", {}), cfg.get("scalar_types", {})),
                    constexprs=cfg["constexprs"])
    row = dict(name=cfg["name"], kernel=kernel.__name__, arch=arch, num_warps=cfg["num_warps"])
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        # ptxas's own report (-v, with the flags Triton builds the cubin with), printed by Triton when asked;
        # always_compile: a cached kernel would skip ptxas and print nothing
        with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
            knobs.nvidia.dump_ptxas_log = True
            knobs.compilation.always_compile = True
            compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                      options=dict(num_warps=cfg["num_warps"], num_stages=cfg.get("num_stages", 3)))
    except Exception as e:  # the compiler's message names the kernel and the line
        row.update(ok=False, error=f"{type(e).__name__}: {str(e).strip()[:2000]}")
        return row
    row.update(ok=True, seconds=round(time.perf_counter() - t0, 2), shared=int(compiled.metadata.shared),
               **_ptxas_numbers(log.getvalue()))
    if not row["regs"]:
        row.update(ok=False, error="no ptxas report found (Triton did not print its ptxas log)")
        return row
    problems = []
    spill = max(row["spill_stores"], row["spill_loads"])
    if spill > cfg.get("max_spill", 0):
        problems.append(f"spills {row['spill_stores']} B stores / {row['spill_loads']} B loads "
                        f"(allowed {cfg.get('max_spill', 0)} B)")
    if row["shared"] > SHARED_LIMIT.get(arch, 48 * 1024):
        problems.append(f"shared memory {row['shared']} B > {SHARED_LIMIT.get(arch)} B")
    row["problems"] = problems
    return row


def all_configs():
    from .polyline_attention import triton_impl as polyline
    from .selective_scan import triton_impl as scan

    return [*scan.aot_configs(), *polyline.aot_configs()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="80,90", help="compute capabilities, comma separated (default 80,90)")
    p.add_argument("--only", default=None, help="compile only configurations whose name contains this")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("kernels.triton_aot: unset TRITON_INTERPRET (interpreted kernels cannot be compiled)")
    missing = toolchain_missing()
    if missing:
        sys.exit(f"kernels.triton_aot needs Triton with its NVIDIA backend and ptxas ({missing})")
    rows = []
    configs = [c for c in all_configs() if a.only is None or a.only in c["name"]]
    for arch in (int(x) for x in a.arch.split(",")):
        for cfg in configs:
            row = compile_config(cfg, arch)
            rows.append(row)
            if a.json:
                print(json.dumps(row), flush=True)
            elif not row["ok"]:
                print(f"sm_{arch}  {row['name']:<44} FAILED: {row['error']}", flush=True)
            else:
                flag = "  <-- " + "; ".join(row["problems"]) if row["problems"] else ""
                print(f"sm_{arch}  {row['name']:<44} warps {row['num_warps']}  regs {row['regs']:>3}  "
                      f"spill {row['spill_stores']:>4} B  shared {row['shared']:>6} B  ({row['seconds']:.1f} s){flag}",
                      flush=True)
    return 0 if all(r["ok"] and not r["problems"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
