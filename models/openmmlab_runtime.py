"""The launch-time half of the OpenMMLab adapter: what detection/ and segmentation/ scripts share.

mmengine's Runner does the work; these fill its gaps on CPU-only machines and under torch >= 2.6:

* :func:`resolve_launcher` / :func:`setup_device` - CUDA: NCCL, and mmengine initialises the process group.
  CPU: mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes
  ``device_ids=[LOCAL_RANK]``, which CPU modules refuse; so the gloo process group is created here, the
  wrapper gets ``device_ids=None``, SyncBN (a CUDA-only layer) becomes BN in the model config, the
  ``sync_bn`` conversion is switched off (with a warning) and DDP broadcasts the BN buffers from rank 0
  every step so that the ranks' statistics stay in step.
* :func:`write_test_metrics` - the test metrics file written once, from rank 0.
* :func:`mmengine_checkpoint_globals` - ``torch.load(weights_only=True)`` (torch's default since 2.6, used
  by mmengine's loader) refuses mmengine's own training checkpoints, whose message hub pickles a few
  numpy / mmengine objects; only those globals are allowed, nothing else.

Like :mod:`models.openmmlab`, this module needs mmengine; ``import models`` never imports it.
"""
from __future__ import annotations

import contextlib
import json
import os

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

__all__ = ["LAUNCHERS", "dist_backend", "mmengine_checkpoint_globals", "replace_sync_bn", "resolve_launcher",
           "setup_device", "write_test_metrics"]

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def resolve_launcher(launcher: str | None) -> str:
    """``None`` means: ``pytorch`` when started by torchrun (``LOCAL_RANK`` and ``WORLD_SIZE`` set), else
    ``none``."""
    if launcher is not None:
        if launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
        return launcher
    return "pytorch" if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ else "none"


def dist_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def replace_sync_bn(node) -> None:
    """Turns every ``dict(type='SyncBN', ...)`` in a (model) config into ``BN``, in place."""
    if isinstance(node, dict):
        for value in node.values():
            if isinstance(value, dict) and value.get("type") == "SyncBN":
                value["type"] = "BN"
            replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            replace_sync_bn(item)


def setup_device(cfg: Config, launcher: str) -> str:
    """Prepares ``cfg`` (launcher, backend, DDP wrapper, norms) for this machine; returns 'cuda' or 'cpu'."""
    cfg.launcher = launcher
    dist_cfg = cfg.setdefault("env_cfg", ConfigDict()).setdefault("dist_cfg", ConfigDict())
    dist_cfg["backend"] = dist_backend()
    if torch.cuda.is_available():
        return "cuda"
    replace_sync_bn(cfg.get("model"))
    if cfg.get("sync_bn"):
        print_log(f"sync_bn={cfg.sync_bn!r} needs CUDA (torch SyncBatchNorm); on CPU the BatchNorm statistics "
                  "are broadcast from rank 0 instead", logger="current", level=30)
    cfg.sync_bn = None
    if launcher != "none":
        if launcher != "pytorch":
            raise RuntimeError(f"--launcher {launcher} needs CUDA; on a CPU-only machine use torchrun "
                               "(--launcher pytorch)")
        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        wrapper = ConfigDict(cfg.get("model_wrapper_cfg") or dict(type="MMDistributedDataParallel"))
        wrapper.update(device_ids=None, broadcast_buffers=True)  # CPU modules: DDP refuses device ids
        wrapper.setdefault("find_unused_parameters", cfg.get("find_unused_parameters", False))
        cfg.model_wrapper_cfg = wrapper
    return "cpu"


# Globals an mmengine training checkpoint pickles besides tensors: its message hub keeps HistoryBuffers
# (numpy arrays, statistics methods restored through getattr). numpy's dtype classes are added on top.
_CHECKPOINT_GLOBALS = (
    "mmengine.logging.history_buffer.HistoryBuffer", "builtins.getattr", "numpy.ndarray", "numpy.dtype",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
)


@contextlib.contextmanager
def mmengine_checkpoint_globals(path: str | None = None):
    """Context in which ``torch.load(weights_only=True)`` reads mmengine checkpoints, training state included.

    Only the globals mmengine's message hub needs are allowed; the weights-only unpickler still refuses any
    other. With ``path``, the file's pickled globals are listed first (without executing anything) and an
    unknown one is an error naming it, before anything is loaded."""
    import numpy as np
    import torch.serialization as serialization

    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        unknown = sorted(n for n in serialization.get_unsafe_globals_in_checkpoint(path)
                         if n not in _CHECKPOINT_GLOBALS and not n.startswith("numpy.dtypes."))
        if unknown:
            raise RuntimeError(f"{path}: refusing to unpickle globals {unknown} (not part of an mmengine "
                               f"checkpoint); if you trust the file, re-save its 'state_dict' with torch.save")
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed = [HistoryBuffer, getattr, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with serialization.safe_globals(allowed):
        yield


def write_test_metrics(runner, metrics: dict) -> str:
    """Rewrites ``<log_dir>/<timestamp>.json`` with the test metrics from rank 0 once every rank is done.

    mmengine's LoggerHook dumps that file from every rank at the same time (with per-rank timings, so the
    writes differ in length), which can leave it corrupt in multi-process runs."""
    from mmengine.dist import barrier, is_main_process

    barrier()
    path = os.path.join(runner.log_dir, f"{runner.timestamp}.json")
    if is_main_process():
        with open(path, "w") as f:
            f.write(json.dumps(dict(metrics), default=float) + "\n")
    barrier()
    return path
