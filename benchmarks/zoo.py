"""Model zoo table: every registered model's params, FLOPs, speed and memory next to its paper's numbers.

    python -m benchmarks.zoo [--device cpu|cuda] [--models NAME ...] [--quick] [--batch B] [--threads T]
                             [--repeats R] [--no-task-flops] [--out-md PATH] [--out-json PATH]

One row per registered model (aliases resolved to the variant they build and listed with it): exact params;
fvcore GFLOPs at 224 and, for the backbones the detection / segmentation configs use, of the backbone at
1280 x 800 and 512 x 512 (``benchmarks/model_costs.py``); inference and training images/s and peak memory
at the stated batch, fp32, 224 x 224 (``benchmarks/model_speed.py``); the paper's params, FLOPs and top-1
with the differences (``benchmarks/paper_numbers.py``). Each model is measured in its own subprocess.

Writes ``benchmarks/ZOO.md`` and ``benchmarks/zoo.json`` (CPU; ``ZOO-cuda.md`` / ``zoo-cuda.json`` for
``--device cuda``) with the command, date, machine, versions and load average in the header. Never edit
them by hand: rerun the command (``python -m benchmarks.zoo_report`` re-renders ZOO.md from zoo.json after
a change to the renderer alone). ``--quick`` (the CI mode) is batch 2, one timed repeat and no task-size
FLOPs; the full run is for a person (a CPU run of all models takes tens of minutes).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAMILIES = (  # (model-name prefix, family label), in table order
    ("ppma_", "PPMA"), ("rmt_", "RMT (PPMA's baselines)"), ("p2t_", "P2T"), ("pacavit_", "PaCa-ViT"),
    ("mpvit_", "MPViT"), ("spatial_mamba_", "Spatial-Mamba"),
)
FULL = dict(cpu=dict(batch=8, repeats=3), cuda=dict(batch=64, repeats=10))
QUICK = dict(batch=2, repeats=1)
IMAGE_SIZE = 224


def family_of(name: str) -> str:
    return next(label for prefix, label in FAMILIES if name.startswith(prefix))


# ------------------------------------------------------------------------------------- one model (child)
def measure_model(name: str, batch: int, repeats: int, threads: int, device: str, task_flops: bool) -> dict:
    """Every measured column of one model (run in a fresh process: the memory peaks are per process)."""
    import timm
    import torch

    import models  # noqa: F401  (registers the models)
    from benchmarks import model_costs, model_speed

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.create_model(name).to(device)
    row = dict(params=model_costs.count_params(model))
    row["infer"] = model_speed.inference_speed(model, batch, IMAGE_SIZE, repeats, device)
    row["train"] = model_speed.training_speed(model, batch, IMAGE_SIZE, repeats, device)
    del model
    row["gflops_224"] = model_costs.classification_gflops(name)
    tasks = model_costs.downstream_tasks().get(name, ()) if task_flops else ()
    row["backbone_gflops"] = {task: model_costs.backbone_gflops(name, model_costs.TASK_SHAPES[task])
                              for task in tasks}
    return row


# ------------------------------------------------------------------------------------------ the run
def zoo_models(requested: list[str] | None) -> list[tuple[str, list[str]]]:
    """(variant, its aliases) for the requested names (all registered models by default), in table order."""
    import models
    from benchmarks.paper_numbers import aliases_of, canonical_name

    known = models.list_models()
    unknown = [n for n in requested or () if n not in known]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; registered: {', '.join(known)}")
    names = sorted({canonical_name(n) for n in (requested or known)})
    order = {prefix: i for i, (prefix, _) in enumerate(FAMILIES)}
    names.sort(key=lambda n: (next(order[p] for p, _ in FAMILIES if n.startswith(p)), n))
    return [(n, aliases_of(n)) for n in names]


def run_child(name: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.zoo", "--case", name, "--device", args.device, "--batch",
           str(args.batch), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    if not args.task_flops:
        cmd.append("--no-task-flops")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return dict(error=tail[0], wall_s=round(time.time() - t0, 1))
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), wall_s=round(time.time() - t0, 1))


def paper_fields(name: str) -> dict:
    from benchmarks.paper_numbers import paper_numbers

    p = paper_numbers(name)
    return dict(params_m=p.params_m, gflops=p.flops_g, top1=p.top1, source=p.source)


def _git_commit() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine_meta(device: str) -> dict:
    import fvcore  # noqa: F401
    import timm
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    meta = dict(cpu=cpu, cpu_cores=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                timm=timm.__version__, platform=platform.platform())
    if device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(0)
        meta["cuda"] = torch.version.cuda
    return meta


def run(args, argv: list[str]) -> dict:
    started = time.time()
    meta = dict(command="python -m benchmarks.zoo " + " ".join(argv),
                date_utc=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                commit=_git_commit(), device=args.device, batch=args.batch, repeats=args.repeats,
                threads=args.threads, image_size=IMAGE_SIZE, dtype="float32", quick=args.quick,
                task_flops=args.task_flops, loadavg_start=[round(v, 2) for v in os.getloadavg()],
                machine=machine_meta(args.device))
    rows = []
    for name, aliases in zoo_models(args.models):
        row = dict(model=name, aliases=aliases, family=family_of(name), paper=paper_fields(name))
        row.update(run_child(name, args))
        rows.append(row)
        print(_progress_line(row), flush=True)
    meta["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    meta["wall_s"] = round(time.time() - started, 1)
    return dict(meta=meta, models=rows)


def _progress_line(row: dict) -> str:
    if "error" in row:
        return f"{row['model']}: FAILED ({row['error']})"
    return (f"{row['model']}: {row['params'] / 1e6:.2f} M, {row['gflops_224']:.3f} GFLOPs, infer "
            f"{row['infer']['img_s']:.1f} img/s, train {row['train']['img_s']:.1f} img/s ({row['wall_s']:.0f} s)")


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--models", nargs="+", default=None, help="names or aliases (default: every registered model)")
    p.add_argument("--quick", action="store_true", help="CI mode: batch 2, 1 repeat, no task-size FLOPs")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    p.add_argument("--no-task-flops", dest="task_flops", action="store_false", default=None,
                   help="skip the backbone FLOPs at 1280x800 / 512x512 (the slowest part on a CPU)")
    p.add_argument("--out-md", default=None)
    p.add_argument("--out-json", default=None)
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child process: one model
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL[args.device]
    args.batch = args.batch or preset["batch"]
    args.repeats = args.repeats or preset["repeats"]
    args.threads = args.threads or os.cpu_count()
    args.task_flops = (not args.quick) if args.task_flops is None else args.task_flops
    suffix = "" if args.device == "cpu" else f"-{args.device}"
    args.out_md = args.out_md or str(ROOT / "benchmarks" / f"ZOO{suffix}.md")
    args.out_json = args.out_json or str(ROOT / "benchmarks" / f"zoo{suffix}.json")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.case:
        row = measure_model(args.case, args.batch, args.repeats, args.threads, args.device, args.task_flops)
        print(json.dumps(row))
        return 0
    from benchmarks.zoo_report import render_markdown

    result = run(args, argv)
    pathlib.Path(args.out_json).write_text(json.dumps(result, indent=1) + "\n")
    pathlib.Path(args.out_md).write_text(render_markdown(result))
    print(f"wrote {args.out_md} and {args.out_json} ({result['meta']['wall_s']:.0f} s)")
    return 1 if any("error" in r for r in result["models"]) else 0


if __name__ == "__main__":
    sys.exit(main())
