"""Command line of the GPU suite (see the package docstring): the parent runs each section in a child process
of this module (``--child SECTION``) under its time budget and keeps the report current."""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time

from .report import counts, read_records, write_report

# name: (title, budget in s on a GPU, budget in s for --smoke, one-line description)
SECTIONS = {
    "correctness": ("1. Correctness on the device", 70, 240,
                    "Relative errors ||x - ref|| / ||ref|| against fp64 references, forward and every gradient."),
    "kernels": ("2. Kernel speed and memory", 90, 150,
                "Forward + backward; `ms` = median time, `peak_mib` = max_memory_allocated above the inputs; "
                "ratios > 1 in `X/triton time` mean the Triton path is faster."),
    "models": ("3. Whole-model training throughput", 110, 180,
               "bf16 autocast, channels_last, fused AdamW, cudnn.benchmark off (its autotuning took ~20 s per "
               "model); images/s of a training step and of inference."),
    "detection": ("4. Detection-size backbones: memory and numerical safety", 55, 120,
                  "features_only + out_norm backbones, forward + backward of a 1344 x 800 batch of 2; every "
                  "family finite under bf16 / fp16 autocast at 1216 x 800."),
    "trainer": ("5. Trainer on the device", 135, 240,
                "classification/main.py under torchrun on the embedded data; NCCL + DDP."),
    "tiles": ("6. Triton launch-configuration sweep", 60, 150,
              "Per-kernel times of each launch configuration; outputs compared with the default one's."),
}
GRACE_S = 30
FULL_DEADLINE_S = 570.0  # one device call may run 600 s


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(__file__)).stdout.strip() or "?"
    except OSError:
        return "?"


def _meta(args, device: str) -> dict:
    import torch

    meta = {"command": "python -m benchmarks.gpu_suite " + shlex.join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _git_rev(), "mode": "smoke (CPU, tiny sizes)" if args.smoke else "full",
            "device": device, "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda}
    for mod in ("triton", "timm"):
        try:
            meta[mod] = __import__(mod).__version__
        except Exception as err:  # noqa: BLE001  (reported, not fatal)
            meta[mod] = f"not importable ({type(err).__name__})"
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        meta["gpu"] = q.stdout.strip() or "none"
    except (OSError, subprocess.TimeoutExpired):
        meta["gpu"] = "none (no nvidia-smi)"
    meta["cpu_threads"] = os.cpu_count()
    return meta


def _run_section(name: str, args, device: str, budget: float, records_path: str, report: dict) -> None:
    sec = report["sections"][name]
    cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--child", name, "--records", records_path,
           "--budget", str(budget), "--device", device, "--out", args.out]
    if args.smoke:
        cmd.append("--smoke")
    env = dict(os.environ)
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"  # Triton kernels run on CPU tensors only under the interpreter
    t0 = time.monotonic()
    with open(os.path.join(args.out, "gpu_suite.log"), "a") as log:
        log.write(f"\n===== {name} (budget {budget:.0f} s) =====\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        seen = 0
        while proc.poll() is None:
            time.sleep(1.0)
            if time.monotonic() - t0 > budget + GRACE_S:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                sec["state"] = f"killed {GRACE_S} s after its budget"
                break
            recs = read_records(records_path)
            if len(recs) != seen:
                seen, sec["records"] = len(recs), recs
                write_report(report, args.out)
    sec["records"] = read_records(records_path)
    sec["wall_s"] = round(time.monotonic() - t0, 1)
    if sec["state"] == "running":
        sec["state"] = "finished" if proc.returncode == 0 else f"crashed (exit {proc.returncode}, see gpu_suite.log)"
    write_report(report, args.out)
    c = counts(sec["records"])
    print(f"{sec['title']}: {sec['state']} in {sec['wall_s']} s; " + ", ".join(f"{k} {v}" for k, v in c.items()),
          flush=True)
    for rec in sec["records"]:
        if rec.get("status") not in ("ok", "skip"):
            print(f"    {rec.get('status')}: {rec.get('case')}: {rec.get('note', rec.get('max_rel', ''))}", flush=True)


def parent(args) -> int:
    import torch

    if args.smoke:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print("error: no CUDA device visible; run with --smoke for the CPU version", file=sys.stderr)
        return 2
    names = args.sections.split(",") if args.sections else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"error: unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    open(os.path.join(args.out, "gpu_suite.log"), "w").close()
    report = {"meta": _meta(args, device), "sections": {}}
    for n in names:
        title, full, smoke, doc = SECTIONS[n]
        report["sections"][n] = {"title": title, "doc": doc, "state": "not started",
                                 "budget_s": round((smoke if args.smoke else full) * args.budget_scale), "records": []}
    write_report(report, args.out)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        for n in names:
            sec = report["sections"][n]
            left = args.deadline - (time.monotonic() - start) if args.deadline else float("inf")
            if left < 10:
                sec["state"] = "not run (suite deadline)"
                write_report(report, args.out)
                continue
            sec["budget_s"] = round(min(sec["budget_s"], max(left - GRACE_S, 5)))
            sec["state"] = "running"
            _run_section(n, args, device, sec["budget_s"], os.path.join(tmp, f"{n}.jsonl"), report)
    bad = sum(counts(s["records"])[k] for s in report["sections"].values() for k in ("fail", "error"))
    print(f"report: {os.path.join(args.out, 'gpu_suite.md')} ({time.monotonic() - start:.0f} s; "
          f"{bad} failed or erroring case(s))", flush=True)
    return 1 if bad else 0


def child(args) -> int:
    import torch

    from . import correctness, detection_memory, kernel_speed, model_speed, tiles, trainer
    from .common import Section

    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # DDP / NCCL want an index
    sec = Section(args.child, args.records, args.budget, device, args.smoke)
    backend = "aot_eager" if args.smoke else "inductor"  # inductor on 2 CPU cores would take minutes per model
    runners = {
        "correctness": lambda: correctness.run(sec),
        "kernels": lambda: kernel_speed.run(sec),
        "models": lambda: model_speed.run(sec, backend),
        "detection": lambda: detection_memory.run(sec),
        "trainer": lambda: trainer.run(sec, backend, os.path.join(args.out, "gpu_suite.log")),
        "tiles": lambda: tiles.run(sec),
    }
    if device.type == "cpu":
        torch.set_num_threads(min(4, os.cpu_count() or 1))
    runners[args.child]()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite", description=__doc__)
    ap.add_argument("--out", required=True, help="folder for gpu_suite.json / .md / .log")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: checks the suite itself")
    ap.add_argument("--sections", default=None, help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    ap.add_argument("--deadline", type=float, default=None,
                    help="the whole run ends within this many s (sections are shortened or left out to fit); "
                         f"default {FULL_DEADLINE_S:.0f} on a GPU, so that one 600 s device call holds it, none "
                         "with --smoke")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--records", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.deadline is None and not args.smoke:
        args.deadline = FULL_DEADLINE_S
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
