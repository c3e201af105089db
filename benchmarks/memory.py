"""Memory measures the benchmarks share (CPU; on CUDA they use ``torch.cuda.max_memory_allocated``).

- The peak resident set (``VmHWM``) of the process, reset through ``/proc/self/clear_refs``: what the OS gave
  the process at its peak, including what malloc keeps mapped after a free and first-touched pages.
- The allocator's peak (:func:`allocator_peak_bytes`): the most bytes PyTorch's CPU allocator held at once, from
  the profiler's memory events: what CUDA's ``max_memory_allocated`` counts, exact and the same in every run.
"""
from __future__ import annotations


def rss_bytes(field: str) -> int:
    """``field`` of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_rss() -> None:
    """Resets the kernel's peak-RSS mark (VmHWM) of this process (Linux: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def allocator_events(fn) -> tuple[object, list[int]]:
    """Runs ``fn`` and returns (its result, the bytes PyTorch's CPU allocator took (+) and gave back (-) while it
    ran, in order: the profiler's memory events). The profiler's own records add to the resident set: read that
    before."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    return result, [nbytes for _, nbytes in events]


def allocator_peak_bytes(fn) -> int:
    """Runs ``fn`` and returns the most bytes PyTorch's CPU allocator held at once while it ran, above what it
    held before."""
    live = peak = 0
    for nbytes in allocator_events(fn)[1]:
        live += nbytes
        peak = max(peak, live)
    return peak
