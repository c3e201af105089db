"""What detection/train.py and test.py share: launcher and distributed backend, dataset checks, the embedded
dataset, strict checkpoint loading. mmengine's Runner does the rest.

Distributed runs (``torchrun``, see dist_train.sh) use NCCL when CUDA is available and gloo otherwise. On a
CPU-only machine mmengine's own ``init_dist`` cannot be used (it calls ``torch.cuda.set_device``) and its
default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which CPU modules refuse, so for CPU runs the process
group is created here and the wrapper gets ``device_ids=None``.
"""
from __future__ import annotations

import json
import os
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from . import embedded_data

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def resolve_launcher(launcher: str | None) -> str:
    """``None`` means: ``pytorch`` when started by torchrun (``LOCAL_RANK`` / ``WORLD_SIZE`` set), else ``none``."""
    if launcher is not None:
        return launcher
    return "pytorch" if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ else "none"


def dist_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Sets ``cfg.launcher`` and the distributed backend; on CPU creates the gloo process group itself."""
    cfg.launcher = launcher
    if launcher == "none":
        return
    backend = dist_backend()
    cfg.setdefault("env_cfg", ConfigDict())
    cfg.env_cfg.setdefault("dist_cfg", ConfigDict())
    cfg.env_cfg.dist_cfg.backend = backend
    if torch.cuda.is_available():
        return
    if launcher != "pytorch":
        raise RuntimeError(f"--launcher {launcher} needs CUDA; on a CPU-only machine use torchrun (--launcher pytorch)")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="gloo")
    wrapper = cfg.get("model_wrapper_cfg") or ConfigDict(
        type="MMDistributedDataParallel", broadcast_buffers=False,
        find_unused_parameters=cfg.get("find_unused_parameters", False))
    wrapper["device_ids"] = None  # CPU modules: DDP refuses device ids
    cfg.model_wrapper_cfg = wrapper
    if cfg.get("sync_bn"):
        print_log(f"sync_bn={cfg.sync_bn!r} needs CUDA (torch SyncBatchNorm); on CPU the BatchNorm statistics "
                  "stay per process", logger="current", level=30)
        cfg.sync_bn = None


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


def mmengine_checkpoint_globals():
    """Context in which ``torch.load(weights_only=True)`` (torch >= 2.6's default, used by mmengine's loader)
    accepts mmengine's own checkpoints: besides the weights they pickle the message hub (``HistoryBuffer``
    objects holding numpy arrays, and ``getattr`` to restore their statistics methods). Only these globals
    are added; the weights-only unpickler still refuses to call anything else, so a checkpoint that needs
    more fails with torch's message naming the global."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtype_classes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "uint8", "bool")]
    return torch.serialization.safe_globals(
        [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, getattr, *dtype_classes])


def write_test_metrics(runner, metrics: dict) -> str:
    """Rewrites ``<log_dir>/<timestamp>.json`` with the test metrics from rank 0 once every rank is done.

    mmengine's LoggerHook dumps that file from every rank at the same time (with per-rank timings, so the
    writes differ in length), which can leave it corrupt in multi-process runs."""
    from mmengine.dist import barrier, is_main_process

    barrier()
    path = osp.join(runner.log_dir, f"{runner.timestamp}.json")
    if is_main_process():
        with open(path, "w") as f:
            f.write(json.dumps(dict(metrics), default=float) + "\n")
    barrier()
    return path


def default_work_dir(config_path: str) -> str:
    return osp.join("./work_dirs", osp.splitext(osp.basename(config_path))[0])


def check_file(path: str, what: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
