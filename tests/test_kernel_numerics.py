"""Numerical safety of the kernels at the sizes and in the regimes training reaches (issue #19): the
longest sequence (Spatial-Mamba's stage 1 at 224^2, L = 3136) with decays from "forget at once" to "remember
everything", polyline masks with near-zero and near-one decays at N = 4200 (PPMA's stage 3 at a detection
input), RMT's Manhattan decays from "each query keeps to itself" to "no decay", half-precision inputs, forward and backward. Each case must be finite AND match an fp64 reference on
the same (rounded) inputs: finiteness alone would pass a kernel that returns zeros."""
import pytest
import torch

from kernels.manhattan_attention import manhattan_attention, manhattan_attention_reference
from kernels.manhattan_attention.cpp_impl import cpp_available as manhattan_cpp_available
from kernels.polyline_attention import polyline_attention, polyline_attention_reference
from kernels.polyline_attention.cpp_impl import cpp_available as polyline_cpp_available
from kernels.selective_scan import cpp_available, selective_scan, selective_scan_ref
from kernels.state_fusion import state_fusion, state_fusion_ref


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _grads(fn, leaves, g):
    leaves = [t.detach().requires_grad_() for t in leaves]
    out = fn(*leaves)
    return out.detach(), [x.detach() for x in torch.autograd.grad(out, leaves, g.to(out.dtype))]


# (A's range, delta's shift): dt * A from about -1e3 (every step forgets the past: exp underflows to 0) to
# about -1e-5 (no decay over 3136 steps: the states are long sums)
SCAN_REGIMES = {"forget at once": (-50.0, 3.0), "remember everything": (-1e-3, -6.0), "mixed": (None, 0.0)}


@pytest.mark.slow
@pytest.mark.parametrize("regime,impl", [(r, "torch") for r in SCAN_REGIMES] + [("forget at once", "triton")]
                         + [(r, "cpp") for r in SCAN_REGIMES])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scan_at_l3136_extreme_decays_half_inputs(regime, impl, dtype):
    if impl == "cpp" and not cpp_available():
        pytest.skip("the compiled CPU scan is not built (python -m kernels.build_cpu)")
    if impl == "triton" and dtype == torch.bfloat16:
        pytest.skip("the Triton scan reads bf16 like fp16 (upcast on load); one half dtype suffices")
    a_val, shift = SCAN_REGIMES[regime]
    g = torch.Generator().manual_seed(0)
    b, D, N, L = 1, 8, 1, 3136
    u = torch.randn(b, D, L, generator=g)
    delta = torch.randn(b, D, L, generator=g) + shift
    A = torch.full((D, N), a_val) if a_val is not None else -torch.logspace(-3, 1.7, D).view(D, 1)
    B = torch.randn(b, N, L, generator=g)
    bias = 0.1 * torch.randn(D, generator=g)
    gout = torch.randn(b, D, N, L, generator=g)
    lowered = [u.to(dtype), delta.to(dtype), A, B.to(dtype), bias]
    h, grads = _grads(lambda *x: selective_scan(*x, impl=impl), lowered, gout)
    h_ref, grads_ref = _grads(selective_scan_ref, [t.double() for t in lowered], gout.double())
    assert torch.isfinite(h).all() and all(torch.isfinite(x).all() for x in grads)
    assert _rel(h, h_ref) < 1e-5, _rel(h, h_ref)
    for name, a, r, tol in zip(("du", "ddelta", "dA", "dB", "dbias"), grads, grads_ref, (1e-2, 1e-2, 1e-4, 1e-2, 1e-4)):
        assert _rel(a, r) < tol, (name, _rel(a, r))  # du, ddelta, dB come back in the half dtype


# log-decays per step: near zero decay (exp(-25) ~ 1e-11 per step: each token sees almost only itself along a
# path) and near one (exp(-1e-6): no decay across the whole image)
POLY_REGIMES = {"near-zero decay": 25.0, "near-one decay": 1e-6}


@pytest.mark.slow
@pytest.mark.parametrize("regime", list(POLY_REGIMES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode,impl", [("full", "torch"), ("full", "cpp"), ("criss_cross", "cpp")])
def test_polyline_extreme_decays_half_inputs(regime, dtype, mode, impl):
    if impl == "cpp" and not polyline_cpp_available():
        pytest.skip("CPU extension not built")
    g = torch.Generator().manual_seed(1)
    # fp16 (the dtype that overflows) at N = 4200; bf16 (fp32's range) at a quarter of it, for test time
    shape = (1, 1, 60, 70) if dtype == torch.float16 else (1, 1, 30, 35)
    q, k, v = (torch.randn(*shape, 32, generator=g) for _ in range(3))
    mag = POLY_REGIMES[regime]
    la = -mag * (0.5 + torch.rand(*shape, generator=g))
    lb = -mag * (0.5 + torch.rand(*shape, generator=g))
    gout = torch.randn(*shape, 32, generator=g)
    lowered = [q.to(dtype), k.to(dtype), v.to(dtype), la, lb]
    out, grads = _grads(lambda *x: polyline_attention(*x, mode=mode, impl=impl), lowered, gout)
    assert out.dtype == dtype and torch.isfinite(out).all() and all(torch.isfinite(x).all() for x in grads)
    ref, grads_ref = _grads(lambda *x: polyline_attention_reference(*x, mode), [t.double() for t in lowered],
                            gout.double())
    tol = 1e-2 if dtype == torch.float16 else 4e-2  # outputs and q/k/v gradients are rounded to the half dtype
    assert _rel(out, ref) < tol, _rel(out, ref)
    for name, a, r in zip(("dq", "dk", "dv", "dlog_a", "dlog_b"), grads, grads_ref):
        assert _rel(a, r) < tol, (name, _rel(a, r))


# RMT's log decays: log(1 - 2^-2) (the fastest head) scaled up to a decay that keeps each query to itself, and
# log(1 - 2^-20) (no decay across the image)
MANHATTAN_REGIMES = {"fast decay": -30.0, "no decay": -1e-6}


@pytest.mark.slow
@pytest.mark.skipif(not manhattan_cpp_available(), reason="CPU extension not built")
@pytest.mark.parametrize("regime", list(MANHATTAN_REGIMES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["full", "axial"])
def test_manhattan_extreme_decays_half_inputs(regime, dtype, mode):
    g = torch.Generator().manual_seed(2)
    shape = (1, 2, 60, 70) if dtype == torch.float16 else (1, 2, 30, 35)  # N = 4200 (fp16), a quarter (bf16)
    q, k, v, gout = (torch.randn(*shape, 32, generator=g) for _ in range(4))
    decay = torch.full((2,), MANHATTAN_REGIMES[regime])
    lowered = [(2 * q).to(dtype), (2 * k).to(dtype), v.to(dtype)]  # 2x: logits up to ~4 sigma^2 d
    out, grads = _grads(lambda *x: manhattan_attention(*x, decay, mode=mode, impl="cpp"), lowered, gout)
    assert out.dtype == dtype and torch.isfinite(out).all() and all(torch.isfinite(x).all() for x in grads)
    ref, grads_ref = _grads(lambda *x: manhattan_attention_reference(*x, decay.double(), mode, 32 ** -0.5),
                            [t.double() for t in lowered], gout.double())
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    assert _rel(out, ref) < tol, _rel(out, ref)
    for name, a, r in zip(("dq", "dk", "dv"), grads, grads_ref):
        assert _rel(a, r) < tol, (name, _rel(a, r))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_state_fusion_large_states_half_precision(dtype):
    """States of magnitude ~1e3 (long scans without decay) through the three dilated convs in half
    precision: finite and within the dtype's rounding of the fp64 per-pixel reference."""
    g = torch.Generator().manual_seed(2)
    h = 1e3 * torch.randn(2, 16, 56, 56, generator=g)
    ks = [torch.randn(16, 1, 3, 3, generator=g) for _ in range(3)]
    alpha = torch.randn(3, generator=g)
    lowered = [h.to(dtype), *(k.to(dtype) for k in ks), alpha.to(dtype)]
    out = state_fusion(*lowered, impl="torch")
    ref = state_fusion_ref(*(t.double() for t in lowered))
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert _rel(out, ref) < (5e-3 if dtype == torch.float16 else 3e-2), _rel(out, ref)
