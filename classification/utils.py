"""Distributed setup, RNG state, atomic checkpoint files, provenance."""
from __future__ import annotations

import datetime
import os
import platform
import random
import subprocess
import sys
import zipfile
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from timm.utils.distributed import init_distributed_device_so

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------- distributed
def init_distributed(device_arg: str | None, backend: str | None = None,
                     url: str | None = None) -> tuple[torch.device, int, int, int]:
    """(device, rank, world_size, local_rank) by timm's init_distributed_device_so: torchrun's variables or
    SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR / MASTER_PORT for env://), NCCL on CUDA,
    gloo on CPU."""
    device = device_arg or ("cuda" if torch.cuda.is_available() else "cpu")
    info = init_distributed_device_so(device=device, dist_backend=backend, dist_url=url)
    return torch.device(info["device"]), info["global_rank"], info["world_size"], info["local_rank"]


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier():
    if is_dist():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sums a list of numbers over all processes (float64)."""
    if not is_dist():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def cleanup_distributed():
    if is_dist():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- RNG state
def get_rng_state() -> dict:
    """Python, numpy, torch (and CUDA) RNG states, stored as types torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_objects(mine) -> list:
    """Every process's `mine` (picklable), as a list indexed by rank (a collective when distributed)."""
    if not is_dist():
        return [mine]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


# ---------------------------------------------------------------------------------------------- checkpoints
class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be written, read or used; the message names the file and the problem."""


def save_atomic(obj, path: str):
    """torch.save into <path>.tmp, fsync, then os.replace: a crash or a full disk never leaves a truncated
    `path`, and a failed write leaves the previous `path` as it was (CheckpointError says so)."""
    tmp = f"{path}.tmp"
    f = None
    try:
        with open(tmp, "wb") as raw:
            f = _KeepsWriteError(raw)
            torch.save(obj, f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except Exception as err:  # ENOSPC / EFBIG / EIO
        cause = (f and f.error) or err
        kept = f"the previous {os.path.basename(path)} is intact" if os.path.exists(path) else "no earlier file"
        raise CheckpointError(f"could not write {path}: {cause} ({_free_space(path)}); {kept}") from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _KeepsWriteError:
    """A file for torch.save that remembers the OSError of a failed write: torch's zip writer reports it
    only as 'unexpected pos ...', without the errno that says 'No space left on device'."""

    def __init__(self, f):
        self.f, self.name, self.error = f, f.name, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self):
        self.f.flush()


def _free_space(path: str) -> str:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize / 2**20:.0f} MiB free on its file system"


def unreadable_reason(path: str) -> str | None:
    """Why `path` cannot be a torch checkpoint, from its size and first / last bytes (cheap: no loading);
    None when it looks like one (a zip archive with its directory, or a legacy pickle)."""
    size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return None if zipfile.is_zipfile(path) else f"truncated or corrupt ({size} bytes; the zip archive has no directory)"
    if head.startswith(b"\x80"):
        return None  # a legacy (pre-zip) torch file or a plain pickle: only loading can tell
    return f"not a PyTorch checkpoint (a torch file is a zip archive or a pickle; this one starts with {head!r})"


def check_readable(path: str, what: str):
    """Raises CheckpointError naming `path` when it cannot be a checkpoint (missing, empty, truncated, other)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path}: file not found")
    reason = unreadable_reason(path)
    if reason:
        raise CheckpointError(f"{what} {path}: {reason}")


def load_checkpoint_file(path: str) -> dict:
    """torch.load(weights_only=True) on the CPU; a file that is no checkpoint, or a truncated one, raises
    CheckpointError naming it (not a pickle or zip traceback)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = unreadable_reason(path) or "truncated, corrupt or not loadable with torch.load(weights_only=True)"
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a checkpoint or truncated: {reason} ({type(err).__name__}"
                              f"{': ' + first if first else ''})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint: holds a {type(ckpt).__name__}, not a dict")
    return ckpt


# ---------------------------------------------------------------------------------------------- provenance
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*cmd) -> str | None:
    try:
        return subprocess.run(["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def command_line(world: int) -> str:
    argv = " ".join(sys.argv[1:])
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "classification/main.py"
    if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_WORLD_SIZE" in os.environ:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", world)
        nnodes = int(world) // int(nproc) if int(nproc) else 1
        nodes = f" --nnodes={nnodes}" if nnodes > 1 else ""
        return f"torchrun{nodes} --nproc_per_node={nproc} {script} {argv}".strip()
    return f"python {script} {argv}".strip()


def provenance(world: int, device: torch.device) -> dict:
    import timm

    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    machine = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "world_size": world,
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return {
        "command": command_line(world),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


@contextmanager
def null_context():
    yield
