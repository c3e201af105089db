"""kernels.cpu_allocator: glibc keeps freed memory in the process, unless the environment sets its thresholds."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FAULTS_OF_A_REUSED_BLOCK = """
import resource, sys
import torch
from kernels.cpu_allocator import keep_freed_memory
if sys.argv[1] == "keep":
    print(keep_freed_memory())
def faults():  # a 40 MiB tensor written, freed: above glibc's largest dynamic mmap threshold (32 MiB)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(10 << 20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print([faults() for _ in range(3)][-1])
"""


@pytest.mark.parametrize("keep,env", [("keep", {}), ("default", {}), ("keep", {"MALLOC_TRIM_THRESHOLD_": "4096"})])
def test_cpu_keeps_freed_memory_unless_the_environment_says(keep, env):
    """keep_freed_memory (the training launchers' default on CPU): a block freed and asked for again reuses its pages
    instead of faulting 10k new ones in; glibc thresholds set in the environment are left as they are."""
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    proc = subprocess.run([sys.executable, "-c", _FAULTS_OF_A_REUSED_BLOCK, keep], cwd=REPO, capture_output=True,
                          text=True, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    faults = int(lines[-1])
    if keep == "keep" and not env:
        assert lines[0] == "CPU allocator: freed memory kept in the process (glibc mmap / trim thresholds 1 GiB)"
        assert faults < 500, faults
    else:
        assert faults > 5000, faults  # 10240 pages of 4 KiB
        if env:
            assert lines[0] == "CPU allocator: left as the environment sets it (MALLOC_TRIM_THRESHOLD_=4096)"
