"""Test harness: deterministic seeds, bounded threads, Triton in interpreter mode on machines without a GPU.

Environment knobs:
  TEST_THREADS=N   torch intra-op threads per test process (default: min(2, cores))
"""
import os
import random

# Triton reads TRITON_INTERPRET when it is imported, so decide before any test module imports it.
# Without a GPU, Triton kernels can only run under the interpreter, on CPU tensors.
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest

SEED = 0
THREADS = int(os.environ.get("TEST_THREADS", min(2, os.cpu_count() or 1)))
torch.set_num_threads(THREADS)


def pytest_report_header(config):
    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no GPU"
    triton_mode = "interpreter (TRITON_INTERPRET=1)" if os.environ.get("TRITON_INTERPRET") == "1" else "compiled"
    return [f"torch {torch.__version__} ({cuda}), {THREADS} thread(s), Triton {triton_mode}, seed {SEED}"]


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from the same RNG state, whatever ran before it."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    yield
