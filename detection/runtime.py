"""What detection/train.py and test.py share: dataset checks, the embedded dataset, work dirs.

The launcher, device and checkpoint-unpickling set-up (gloo + DDP without device ids on CPU, NCCL on CUDA,
mmengine checkpoints under torch's weights-only loading) and the test-metrics file are shared with
segmentation/, in
:mod:`models.openmmlab_runtime`; it is re-exported here. mmengine's Runner does the rest.
"""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config

from models.openmmlab_runtime import (LAUNCHERS, dist_backend, mmengine_checkpoint_globals,  # noqa: F401
                                      resolve_launcher, setup_device, write_test_metrics)

from . import embedded_data


def _dataset_cfgs(dataset):
    """The leaf dataset configs of a (possibly wrapped) dataset config."""
    if dataset is None:
        return []
    if "datasets" in dataset:
        return [d for sub in dataset["datasets"] for d in _dataset_cfgs(sub)]
    if "dataset" in dataset:
        return _dataset_cfgs(dataset["dataset"])
    return [dataset]


def _join(root, path):
    return path if not root or osp.isabs(path) else osp.join(root, path)


def prepare_datasets(cfg: Config, loaders: tuple[str, ...]) -> None:
    """Generates the embedded dataset where a loader points at it; raises a clear error for a missing one."""
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if loader_cfg is None:
            continue
        for ds in _dataset_cfgs(loader_cfg.get("dataset")):
            root = ds.get("data_root")
            if embedded_data.is_embedded_root(root):
                embedded_data.generate(root)
            ann_file = ds.get("ann_file")
            if ann_file and not osp.isfile(_join(root, ann_file)):
                raise FileNotFoundError(
                    f"{loader}: annotation file {_join(root, ann_file)!r} not found. Put the dataset there "
                    f"(COCO layout: data/coco/annotations/instances_{{train,val}}2017.json and the image folders, "
                    f"relative to the working directory) or point the config at it: data_root of the train / val "
                    f"/ test dataloaders and ann_file of the evaluators, e.g. --cfg-options "
                    f"{loader}.dataset.data_root=/path/to/coco/ ...")
    for evaluator in ("val_evaluator", "test_evaluator"):
        if evaluator.replace("evaluator", "dataloader") not in loaders:
            continue
        ev = cfg.get(evaluator)
        for metric in ev if isinstance(ev, (list, tuple)) else [ev]:
            ann_file = (metric or {}).get("ann_file")
            if ann_file and not osp.isfile(ann_file) and not (metric or {}).get("format_only"):
                raise FileNotFoundError(f"{evaluator}: annotation file {ann_file!r} not found")


def default_work_dir(config_path: str) -> str:
    return osp.join("./work_dirs", osp.splitext(osp.basename(config_path))[0])


def check_file(path: str, what: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
