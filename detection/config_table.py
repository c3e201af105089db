"""The detection configs' table and metafile, generated from the ``paper-row`` block of every row config.

Every row config under ``configs/detection/<family>/`` starts with a block::

    # paper-row:
    #   paper: P2T (Wu et al., TPAMI 2022)
    #   backbone: P2T-T
    #   detector: RetinaNet
    #   schedule: 1x
    #   box AP: 41.3
    #   mask AP: -
    #   params (M): 21.1
    #   FLOPs (G): 206
    #   source: official README

    python -m detection.config_table            # rewrite the tables of configs/detection/README.md and
                                                # detection/README.md, and configs/detection/metafile.yml
    python -m detection.config_table --check    # exit 1 if one is stale
"""
from __future__ import annotations

import sys
from pathlib import Path

from openmmlab import config_table
from openmmlab.config_table import TableSpec, metrics

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "detection"
_SIZES = ("tiny", "xsmall", "small", "base", "large")


def _order(path: Path):
    """Detector, then schedule (1x before 3x), then model size, then name."""
    det, backbone, _, schedule, _ = path.stem.split("_")
    size = next((i for i, s in enumerate(_SIZES) if f"-{s}" in f"-{backbone}"), len(_SIZES))
    return det, schedule.endswith("3x"), size, path.name


def _results(row: dict) -> list[dict]:
    return [dict(Task="Object Detection", Dataset="COCO", Metrics=metrics(row, {"box AP": "box AP"})),
            dict(Task="Instance Segmentation", Dataset="COCO", Metrics=metrics(row, {"mask AP": "mask AP"}))]


def _metadata(row: dict) -> dict:
    return {"Training Data": "COCO", "Backbone": row["backbone"], "Detector": row["detector"],
            "Schedule": row["schedule"], **metrics(row, {"params (M)": "Parameters (M)", "FLOPs (G)": "FLOPs (G)"})}


SPEC = TableSpec("detection", CONFIG_DIR, columns=("backbone", "detector", "schedule", "box AP", "mask AP",
                                                   "params (M)", "FLOPs (G)", "source"),
                 order=_order, results=_results, metadata=_metadata)


if __name__ == "__main__":
    sys.exit(config_table.main(SPEC))
