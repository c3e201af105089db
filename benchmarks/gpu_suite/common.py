"""What every section of the GPU suite shares: the case runner (time budget, errors, out-of-memory), timing,
peak memory and relative errors. Runs inside a section's child process."""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch


class Skip(Exception):
    """Raised by a case that does not apply here (the reason becomes the record's note)."""


@dataclass
class Section:
    """One section's cases: ``run(case, fn)`` calls ``fn()`` (a dict of results) unless the section's time
    budget is spent, and appends one JSON record per case to ``path`` (flushed, so a killed run keeps it)."""
    name: str
    path: str
    budget_s: float
    device: torch.device
    smoke: bool
    start: float = field(default_factory=time.monotonic)

    def time_left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def emit(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")

    def run(self, case: str, fn: Callable[[], dict], *, min_left_s: float = 0.0) -> dict | None:
        rec = {"case": case}
        if self.time_left() <= min_left_s:
            self.emit({**rec, "status": "skip", "note": "section time budget spent"})
            return None
        t0 = time.monotonic()
        try:
            rec.update(fn())
            rec.setdefault("status", "ok")
        except Skip as err:
            rec.update(status="skip", note=str(err))
        except torch.OutOfMemoryError as err:
            rec.update(status="oom", note=str(err).splitlines()[0][:200])
        except Exception as err:  # a failing case is a result, and the next case still runs
            rec.update(status="error", note=f"{type(err).__name__}: {str(err).strip()[:400]}",
                       traceback=traceback.format_exc()[-2000:])
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
        rec["wall_s"] = round(time.monotonic() - t0, 2)
        print(f"[{self.name}] {case}: {rec['status']} ({rec['wall_s']} s)"
              + (f" {rec['note']}" if "note" in rec else ""), flush=True)
        self.emit(rec)
        return rec


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, (torch.dtype, torch.device)):
        return str(x)
    return repr(x)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, *, rep_ms: int = 200, slow_ms: float = 50.0) -> float:
    """Median time of ``fn`` in ms, after one untimed call (compilation, allocator growth). Calls slower than
    ``slow_ms`` are timed 3 times with a synchronised wall clock; faster ones on CUDA with
    ``triton.testing.do_bench`` (CUDA events, L2 flushed between runs, ``rep_ms`` of repeats)."""
    first = time_once_ms(fn, device)
    if device.type == "cuda" and first < slow_ms:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=max(rep_ms // 4, 1), rep=rep_ms, return_mode="median"))
    times = sorted(time_once_ms(fn, device) for _ in range(3))
    return times[1]


def time_once_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call in ms (for slow floor references that cannot be repeated many times)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def peak_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Memory ``fn`` needs beyond what was allocated before it: ``torch.cuda.max_memory_allocated`` minus the
    allocation at the start, in MiB (None on CPU, where the suite does not measure memory)."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref|| / ||ref|| in fp64; NaN or Inf anywhere in ``a`` gives inf (never passes)."""
    a, ref = a.detach().double(), ref.detach().double()
    if not torch.isfinite(a).all():
        return math.inf
    den = ref.norm().item()
    return (a - ref).norm().item() / (den if den > 0 else 1.0)


def fmt_errs(errs: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.1e}" for k, v in errs.items()}


def judge(errs: dict[str, float], tol: float) -> dict:
    """Record fields for a comparison: the worst error, the tolerance and ok/fail."""
    worst = max(errs.values()) if errs else 0.0
    return {"max_rel": f"{worst:.1e}", "tol": f"{tol:.0e}", "status": "ok" if worst <= tol else "fail"}


def seeded(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
