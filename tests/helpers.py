"""What several test files share: one closeness assertion and one weight randomiser."""
from __future__ import annotations

import torch
from torch import nn


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, what: str = "") -> None:
    """``|actual - expected| <= atol + rtol * max|expected|`` everywhere, compared in float64, shapes equal.

    ``rtol`` scales with the largest magnitude of ``expected`` (not element by element), so elements near zero
    get the same tolerance as the rest: the comparisons are of fp32 / low-precision paths against references,
    whose error follows the tensor's scale."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    actual, expected = actual.detach().double(), expected.detach().double()
    err = (actual - expected).abs()
    tol = atol + rtol * (expected.abs().max().item() if expected.numel() else 0.0)
    assert bool((err <= tol).all()), (
        f"{what}: max abs err {err.max().item():.3e}, mean abs err {err.mean().item():.3e}, tolerance {tol:.3e} "
        f"(atol {atol}, rtol {rtol}, max |expected| {expected.abs().max().item():.3e})")


def randomize(module: nn.Module, seed: int = 0, scale: float = 0.1, skip: tuple[str, ...] = ()) -> nn.Module:
    """Moves every floating-point parameter and buffer of ``module`` away from its initialisation, in place and
    deterministically (so that a load or a formula that ignores a weight cannot pass): adds ``scale * N(0, 1)``;
    BatchNorm running variances are drawn from U(0.5, 1.5) instead (they must stay positive). Entries whose
    name ends with one of ``skip`` keep their values (buffers with a structure, e.g. PPMA's angles). Returns
    ``module``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point() or name.endswith(tuple(skip)):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.add_(scale * torch.randn(t.shape, generator=g))
    return module
