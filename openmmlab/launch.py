"""Launch-time set-up for mmengine's Runner on GPU nodes and on CPU-only machines.

* :func:`resolve_launcher` / :func:`setup_device` - CUDA: NCCL, and mmengine initialises the process group.
  CPU: mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes
  ``device_ids=[LOCAL_RANK]``, which CPU modules refuse; so the gloo process group is created here, the
  wrapper gets ``device_ids=None``, SyncBN (a CUDA-only layer) becomes BN in the model config, the
  ``sync_bn`` conversion is switched off (with a warning) and :class:`BroadcastBuffersHook` gives every
  rank rank 0's buffers (BN statistics) after each training step, so that the ranks agree in the next step,
  in validation and with the checkpoint (DDP's own ``broadcast_buffers`` syncs only at the start of a
  forward: validation after the last step ran with per-rank statistics).
* :func:`process_group_scope` - the tools destroy the process group they created before the process exits.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

__all__ = ["LAUNCHERS", "BroadcastBuffersHook", "dist_backend", "process_group_scope", "replace_sync_bn",
           "resolve_launcher", "setup_device"]

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


@HOOKS.register_module()
class BroadcastBuffersHook(Hook):
    """After every training step, rank 0's buffers (BatchNorm statistics) on every rank (CPU DDP runs)."""

    priority = "ABOVE_NORMAL"  # before the checkpoint hook and the validation loop

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not dist.is_initialized():
            return
        by_dtype = {}
        for buf in runner.model.buffers():
            by_dtype.setdefault(buf.dtype, []).append(buf)
        for bufs in by_dtype.values():  # one broadcast per dtype, as DDP coalesces them
            flat = _flatten_dense_tensors(bufs)
            dist.broadcast(flat, src=0)
            for buf, synced in zip(bufs, _unflatten_dense_tensors(flat, bufs)):
                buf.copy_(synced)


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
        # CPU modules: DDP refuses device ids; the buffers are synced by BroadcastBuffersHook
        wrapper.update(device_ids=None, broadcast_buffers=False)
        wrapper.setdefault("find_unused_parameters", cfg.get("find_unused_parameters", False))
        cfg.model_wrapper_cfg = wrapper
        cfg.custom_hooks = [*(cfg.get("custom_hooks") or []), dict(type="BroadcastBuffersHook")]
    return "cpu"


@contextlib.contextmanager
def process_group_scope():
    """Destroys the default process group when the body ends normally and the group was created inside it (by
    :func:`setup_device` or mmengine's ``init_dist``); a caller's own group is left alone.

    Left to interpreter shutdown, gloo's worker threads can outlive the interpreter and a rank of a finished run
    aborts ("terminate called without an active exception", SIGABRT; 1 in 30 runs of the 2-process segmentation
    smoke config on a 2-core CPU; pytorch/pytorch#190489). After an exception the group is left as it is: the
    other ranks may be waiting in a collective, and tearing it down under them can hang (NCCL); the process is
    failing anyway.
    """
    owned = not (dist.is_available() and dist.is_initialized())
    yield
    if owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
