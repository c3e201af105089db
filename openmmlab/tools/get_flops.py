"""``<task>/get_flops.py``: parameters and FLOPs of configs (:mod:`openmmlab.flops`), next to the paper's.

    python <task>/get_flops.py CONFIG [CONFIG ...] [--shape H [W]] [--cfg-options KEY=VALUE ...]
                               [--show-unsupported]

Default input: detection 1280 x 800 (mmdet 2.x's order, as the papers), segmentation 512 x 512 (UperNet
papers in the Swin convention quote 512 x 2048: ``--shape 512 2048``). One line per config::

    CONFIG | params 21.10 M (backbone 11.21 M) | FLOPs 218.1 G | paper 21.1 M / 206 G

with the paper values of the config's ``paper-row`` block (``-`` where it has none; a paper FLOPs value
measured at another input size names it).
"""
from __future__ import annotations

import argparse

from mmengine.config import DictAction
from mmengine.logging import MMLogger

from ..config_table import parse_paper_row
from ..configs import load_config, resolve_config
from ..flops import analyze
from ..task import Task

__all__ = ["format_line", "main"]


def format_line(config: str, result: dict, paper: dict) -> str:
    flops, _, where = paper.get("FLOPs (G)", "-").partition(" ")  # "936 (2048x512)": at another input size
    return (f"{config} | params {result['params'] / 1e6:.2f} M (backbone {result['backbone_params'] / 1e6:.2f} M) | "
            f"FLOPs {result['flops'] / 1e9:.1f} G | paper {paper.get('params (M)', '-')} M / {flops} G"
            + (f" {where}" if where else ""))


def parse_args(task: Task, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"{task.name}/get_flops.py", description="Parameters and FLOPs of configs")
    parser.add_argument("configs", nargs="+", help="config files or config names")
    parser.add_argument("--shape", type=int, nargs="+", default=list(task.flops_shape),
                        help=f"input H W, or one side (default {task.flops_shape[0]} {task.flops_shape[1]})")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries")
    parser.add_argument("--show-unsupported", action="store_true", help="list the ops no handle counts")
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error(f"--shape takes H W or one side, got {args.shape}")
    args.shape = tuple(args.shape) * (3 - len(args.shape))
    return args


def main(task: Task, argv=None) -> list[dict]:
    args = parse_args(task, argv)
    MMLogger.get_instance(f"{task.name}.get_flops", log_level="WARNING")  # no per-parameter init_weights log
    h, w = args.shape
    print(f"input 1x3x{h}x{w}; FLOPs = fvcore multiply-adds; paper values from the config headers", flush=True)
    results = []
    for name in args.configs:
        path = resolve_config(name, task.config_dir)
        result = analyze(load_config(path, args.cfg_options), task.scope, (h, w), task.flops_data_samples(h, w))
        print(format_line(name, result, parse_paper_row(path) or {}), flush=True)
        if args.show_unsupported:
            print("  not counted:", ", ".join(f"{k} x{v}" for k, v in sorted(result["unsupported"].items())))
        results.append(result)
    return results
