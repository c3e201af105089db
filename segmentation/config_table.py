"""The segmentation configs' table and metafile, generated from the ``paper-row`` block of every row config.

Every row config under ``configs/segmentation/<family>/`` has a block (``ours`` is what
``segmentation/get_flops.py`` prints for it at 512x512; the tests check the parameter count)::

    # paper-row:
    #   paper: PPMA (Zhao et al., NeurIPS 2025)
    #   backbone: PPMA-T
    #   method: UperNet
    #   dataset: ADE20K 512x512
    #   schedule: 160k
    #   mIoU (ss): 48.7
    #   mIoU (ms): 49.1
    #   params (M): -
    #   FLOPs (G): -
    #   ours (M / G, 512x512): 43.09 / 229.5

    python -m segmentation.config_table            # rewrite the tables of configs/segmentation/README.md and
                                                   # segmentation/README.md, and configs/segmentation/metafile.yml
    python -m segmentation.config_table --check    # exit 1 if one is stale
"""
from __future__ import annotations

import sys
from pathlib import Path

from openmmlab import config_table
from openmmlab.config_table import TableSpec, metrics

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "segmentation"
OURS = "ours (M / G, 512x512)"
_SIZES = ("tiny", "small", "base", "large")


def _order(path: Path):
    """Cityscapes last, UperNet / FPN before the PaCa head, ablations last, then size, clusterer, name."""
    head, backbone = path.stem.split("_")[:2]
    ablation = path.read_text().startswith("# Ablation")
    size = next((i for i, s in enumerate(_SIZES) if f"-{s}" in backbone), len(_SIZES))
    variant = 2 if "convmixer" in backbone else 1 if "p2cmlp" in backbone else 0
    return "cityscapes" in path.stem, head == "pacahead", ablation, size, variant, path.name


def _results(row: dict) -> list[dict]:
    dataset = row["dataset"].split()[0]
    return [dict(Task="Semantic Segmentation", Dataset=dataset,
                 Metrics=metrics(row, {"mIoU (ss)": "mIoU", "mIoU (ms)": "mIoU(ms+flip)"}))]


def _metadata(row: dict) -> dict:
    params, flops = (float(v) for v in row[OURS].split(" / "))
    return {"Training Data": row["dataset"].split()[0], "Backbone": row["backbone"], "Method": row["method"],
            "Crop Size": row["dataset"].split()[1], "Iterations": row["schedule"],
            **metrics(row, {"params (M)": "Parameters (M)"}),
            "FLOPs (G)": None if row["FLOPs (G)"] == "-" else row["FLOPs (G)"],
            "Parameters (M, ours)": params, "FLOPs (G, ours, 512x512)": flops}


SPEC = TableSpec("segmentation", CONFIG_DIR, columns=("backbone", "method", "dataset", "schedule", "mIoU (ss)",
                                                      "mIoU (ms)", "params (M)", "FLOPs (G)", OURS),
                 order=_order, results=_results, metadata=_metadata)


if __name__ == "__main__":
    sys.exit(config_table.main(SPEC))
