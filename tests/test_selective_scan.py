"""Selective scan (state-returning, any d_state): fast paths vs the sequential reference, forward and every
gradient, gradcheck in fp64, low precision safety, the custom-op / torch.compile / fvcore integration, and the
Triton kernels under the interpreter (marked ``triton``)."""
import contextlib

import pytest
import torch

from kernels.selective_scan import (OP_NAME, cpp_available, linear_scan, linear_scan_adjoint, selective_scan,
                                    selective_scan_flop_jit, selective_scan_ref, selective_scan_ref_bwd)
from kernels.selective_scan.cpp_impl import cpp_unavailable_reason
from kernels.selective_scan.chunked import selective_scan_chunked, selective_scan_chunked_bwd
from helpers import assert_close

NAMES = ("u", "delta", "A", "B", "delta_bias")
# The compiled CPU path exists once `python -m kernels.build_cpu` has run (install_requirements.sh runs it)
needs_cpp = pytest.mark.skipif(not cpp_available(), reason=f"CPU extension not built: {cpp_unavailable_reason()}")
CPU_IMPLS = ["torch", pytest.param("cpp", marks=needs_cpp)]


def _inputs(b, D, N, L, dtype=torch.float32, a_scale=2.0, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, D, L, generator=g)
    delta = torch.randn(b, D, L, generator=g) - 1.0
    A = -torch.rand(D, N, generator=g) * a_scale - 0.05
    B = torch.randn(b, N, L, generator=g)
    db = torch.randn(D, generator=g) * 0.5 if bias else None
    cast = lambda t: None if t is None else t.to(dtype)
    return cast(u), cast(delta), A.to(dtype if dtype == torch.float64 else torch.float32), cast(B), \
        (None if db is None else db.to(dtype if dtype == torch.float64 else torch.float32))


@contextlib.contextmanager
def _num_threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _assert_matches(h, grads, h_ref, g_ref):
    """States to 1e-6 + 1e-5 relative, every gradient to 1e-5 + 2e-5 relative of the reference's."""
    assert_close(h, h_ref, 1e-6, 1e-5, what="h")
    for name, a, r in zip(NAMES, grads, g_ref):
        assert_close(a, r, 1e-5, 2e-5, what=f"d{name}")


def _grads(fn, inputs, g):
    leaves = [None if t is None else t.clone().requires_grad_() for t in inputs]
    h = fn(*leaves)
    used = [t for t in leaves if t is not None]
    return h, torch.autograd.grad(h, used, g)


@pytest.mark.parametrize("N,L", [(1, 1), (1, 7), (4, 49), (1, 197), (16, 49), (4, 197)])
@pytest.mark.parametrize("impl", CPU_IMPLS + ["reference"])
def test_op_matches_sequential_reference_forward_and_all_grads(N, L, impl):
    inputs = _inputs(2, 5, N, L)
    g = torch.randn(2, 5, N, L, generator=torch.Generator().manual_seed(1))
    h_ref, g_ref = _grads(selective_scan_ref, inputs, g)
    h, grads = _grads(lambda *x: selective_scan(*x, impl=impl), inputs, g)
    assert h.dtype == torch.float32 and h.shape == (2, 5, N, L)
    _assert_matches(h, grads, h_ref, g_ref)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("softplus,bias", [(False, False), (True, False), (False, True)])
def test_fast_paths_without_bias_or_softplus(softplus, bias, impl):
    u, delta, A, B, db = _inputs(1, 3, 2, 23, bias=bias)
    if not softplus:
        delta = delta.abs() * 0.3
    inputs = (u, delta, A, B, db)
    g = torch.randn(1, 3, 2, 23)
    h_ref, g_ref = _grads(lambda *x: selective_scan_ref(*x[:4], x[4] if bias else None, softplus),
                          inputs if bias else inputs[:4] + (None,), g)
    h, grads = _grads(lambda *x: selective_scan(*x[:4], x[4] if bias else None, softplus, impl=impl),
                      inputs if bias else inputs[:4] + (None,), g)
    _assert_matches(h, grads, h_ref, g_ref)


@pytest.mark.parametrize("chunk", [2, 3, 8, 64])
def test_chunked_multi_level_and_fast_decay_fallback(chunk):
    # many chunks (recursive carry) and decays far beyond e^60 inside a chunk (Hillis-Steele fallback)
    for a_scale in (1.0, 80.0):
        u, delta, A, B, db = _inputs(2, 3, 2, 150, dtype=torch.float64, a_scale=a_scale)
        h_ref = selective_scan_ref(u, delta, A, B, db)
        h = selective_scan_chunked(u, delta, A, B, db, chunk=chunk)
        assert torch.isfinite(h).all()
        assert_close(h, h_ref, 1e-12, 1e-12, what=f"h chunk={chunk} a_scale={a_scale}")
        g = torch.randn_like(h_ref)
        ref = selective_scan_ref_bwd(g, u, delta, A, B, db)
        for given_h in (None, h_ref):  # states recomputed, or handed over as the op does with its output
            for name, a, r in zip(NAMES, selective_scan_chunked_bwd(g, u, delta, A, B, db, chunk=chunk, h=given_h),
                                  ref):
                assert_close(a, r, 1e-11, 1e-11, what=f"d{name} chunk={chunk} a_scale={a_scale} h given={given_h is not None}")


def test_linear_scan_matches_loop():
    la = -torch.rand(3, 100, dtype=torch.float64) * 3
    b = torch.randn(3, 100, dtype=torch.float64)
    h, ref = torch.zeros(3, dtype=torch.float64), []
    for t in range(100):
        h = torch.exp(la[:, t]) * h + b[:, t]
        ref.append(h)
    assert_close(linear_scan(la, b, chunk=16), torch.stack(ref, -1), 1e-13, 1e-13, what="h")


def test_chunk_plan_prefers_divisors():
    from kernels.selective_scan.chunked import _plan
    assert _plan(196, 64) == (49, 4, 0)  # Spatial-Mamba stage 3 at 224: no padding copies
    assert _plan(3136, 64) == (64, 49, 0)  # stage 1
    assert _plan(196, 30) == (28, 7, 0)
    assert _plan(196, 24) == (22, 9, 2)  # no divisor near: balanced chunks, least padding
    assert _plan(197, 64) == (50, 4, 3)
    assert _plan(1, 64) == (1, 1, 0) and _plan(5, 2) == (2, 3, 1)


@pytest.mark.parametrize("overwrite", [False, True])
def test_linear_scan_mixed_signs_and_overwrite(overwrite):
    # la of both signs (S not monotone inside a chunk: the full range check), many chunks (recursive carry)
    gen = torch.Generator().manual_seed(3)
    la = torch.randn(4, 300, generator=gen, dtype=torch.float64) * 0.5
    la[1] = -torch.rand(300, generator=gen, dtype=torch.float64) * 4  # steep decay: shorter chunks
    b = torch.randn(4, 300, generator=gen, dtype=torch.float64)
    h, ref = torch.zeros(4, dtype=torch.float64), []
    for t in range(300):
        h = torch.exp(la[:, t]) * h + b[:, t]
        ref.append(h)
    ref = torch.stack(ref, -1)
    la_in, b_in = la.clone(), b.clone()
    assert_close(linear_scan(la_in, b_in, chunk=16, overwrite=overwrite), ref, 1e-12, 1e-12, what="h")
    if not overwrite:  # the inputs are left alone unless the caller hands them over
        assert torch.equal(la_in, la) and torch.equal(b_in, b)
    lam_ref, lam = [None] * 300, torch.zeros(4, dtype=torch.float64)
    for t in reversed(range(300)):
        lam = b[:, t] + (torch.exp(la[:, t + 1]) * lam if t + 1 < 300 else 0)
        lam_ref[t] = lam
    assert_close(linear_scan_adjoint(la.clone(), b, chunk=16, overwrite=overwrite), torch.stack(lam_ref, -1), 1e-12, 1e-12, what="lam")


@pytest.mark.parametrize("L,chunk", [(1, 64), (2, 2), (100, 16), (100, 7), (197, 64)])
@pytest.mark.parametrize("scale", [3.0, 200.0])  # 200: decays beyond e^60 inside a chunk (fallback path)
def test_linear_scan_adjoint_matches_loop(L, chunk, scale):
    gen = torch.Generator().manual_seed(L)
    la = -torch.rand(3, L, generator=gen, dtype=torch.float64) * scale
    la[0] = torch.rand(L, generator=gen, dtype=torch.float64) * 0.05  # growth (la > 0) is allowed too
    g = torch.randn(3, L, generator=gen, dtype=torch.float64)
    lam, ref = torch.zeros(3, dtype=torch.float64), [None] * L
    for t in reversed(range(L)):
        lam = g[:, t] + (torch.exp(la[:, t + 1]) * lam if t + 1 < L else 0)
        ref[t] = lam
    assert_close(linear_scan_adjoint(la, g, chunk=chunk), torch.stack(ref, -1), 1e-12, 1e-12, what="lam")


@pytest.mark.parametrize("impl", CPU_IMPLS + ["reference"])
@pytest.mark.parametrize("N", [1, 4, 16])
def test_gradcheck_fp64(impl, N):
    inputs = [t.requires_grad_() for t in _inputs(1, 2, N, 6 if N < 16 else 3, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda *x: selective_scan(*x, impl=impl), inputs)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_finite_and_accumulate_in_fp32(dtype, impl):
    u, delta, A, B, db = _inputs(2, 4, 1, 197, dtype=dtype)
    leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, db)]
    h = selective_scan(*leaves, impl=impl)
    assert h.dtype == torch.float32 and torch.isfinite(h).all()
    h.square().mean().backward()
    for name, t in zip(NAMES, leaves):
        assert t.grad.dtype == t.dtype and torch.isfinite(t.grad).all(), f"d{name} not finite"
    # fp32 accumulation: equals the fp32 reference on the same (rounded) inputs
    h_ref = selective_scan_ref(u.float(), delta.float(), A, B.float(), db)
    assert_close(h, h_ref, 1e-6, 1e-5, what="h")


@needs_cpp
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("b,D,N,L", [(3, 19, 1, 50), (2, 17, 3, 1), (1, 203, 1, 64)])
def test_cpp_channel_blocks_and_threads(b, D, N, L, threads):
    # D = 19: two blocks of 8 channels and 3 single ones; D = 203 at L = 64 is more than one task's grain, so
    # with 2 threads each accumulates its own dB (then summed)
    inputs = _inputs(b, D, N, L, seed=5)
    g = torch.randn(b, D, N, L, generator=torch.Generator().manual_seed(6))
    h_ref, g_ref = _grads(selective_scan_ref, inputs, g)
    with _num_threads(threads):
        h, grads = _grads(lambda *x: selective_scan(*x, impl="cpp"), inputs, g)
    _assert_matches(h, grads, h_ref, g_ref)


def test_auto_takes_the_compiled_path_on_cpu_when_built():
    import sys
    scan_pkg = sys.modules["kernels.selective_scan"]  # (the attribute kernels.selective_scan is the function)
    u = torch.zeros(1, 1, 1)
    assert scan_pkg._resolve("auto", u) == ("cpp" if cpp_available() else "torch")


def test_cpp_path_errors():
    u, delta, A, B, db = _inputs(1, 3, 2, 5)
    if cpp_available():
        with pytest.raises(ValueError, match="CPU tensors"):
            selective_scan(u.to("meta"), delta.to("meta"), A.to("meta"), B.to("meta"), db.to("meta"), impl="cpp")
    else:
        with pytest.raises(RuntimeError, match="kernels.build_cpu"):
            selective_scan(u, delta, A, B, db, impl="cpp")


def test_validation_errors():
    u, delta, A, B, db = _inputs(1, 3, 2, 5)
    with pytest.raises(ValueError, match="impl"):
        selective_scan(u, delta, A, B, db, impl="cuda")
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(u, delta, A, B[:, :1], db)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A[:2], B, db)


def test_torch_compile_sees_one_op():
    ops = []

    def backend(gm, example_inputs):
        ops.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    u, delta, A, B, db = _inputs(1, 3, 1, 9)
    f = torch.compile(lambda *x: selective_scan(*x, impl="torch") * 2, backend=backend, fullgraph=True)
    out = f(u, delta, A, B, db)
    assert sum("selective_scan" in o for o in ops) == 1, ops
    assert_close(out, 2 * selective_scan_ref(u, delta, A, B, db), 1e-6, 1e-5, what="h")


@pytest.mark.parametrize("N", [1, 3])
def test_torch_compile_backward_matches_reference(N):
    # AOT autograd traces the op's autograd formula through both ops' fake kernels
    inputs = _inputs(1, 3, N, 9)
    g = torch.randn(1, 3, N, 9, generator=torch.Generator().manual_seed(2))
    f = torch.compile(lambda *x: selective_scan(*x, impl="torch"), backend="aot_eager", fullgraph=True)
    h, grads = _grads(f, inputs, g)
    h_ref, g_ref = _grads(selective_scan_ref, inputs, g)
    _assert_matches(h, grads, h_ref, g_ref)


def test_torch_path_ignores_reduced_matmul_precision():
    # "medium" runs fp32 matmuls in bf16 on CPUs with AMX (TF32 on CUDA at "high"): the scan must not use any
    inputs = _inputs(2, 4, 1, 197)
    g = torch.randn(2, 4, 1, 197, generator=torch.Generator().manual_seed(4))
    h_ref, g_ref = _grads(selective_scan_ref, inputs, g)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        h, grads = _grads(lambda *x: selective_scan(*x, impl="torch"), inputs, g)
    finally:
        torch.set_float32_matmul_precision(old)
    _assert_matches(h, grads, h_ref, g_ref)


def test_fvcore_flop_handle():
    from fvcore.nn import FlopCountAnalysis

    class M(torch.nn.Module):
        def forward(self, u, delta, A, B, db):
            return selective_scan(u, delta, A, B, db)

    fca = FlopCountAnalysis(M(), _inputs(2, 6, 1, 10))
    fca.set_op_handle(OP_NAME, selective_scan_flop_jit)
    fca.unsupported_ops_warnings(False)
    assert fca.total() == 7 * 2 * 10 * 6 * 1


# ------------------------------------------------------------------------------------------------ Triton
@pytest.mark.triton
@pytest.mark.parametrize("N,L,block_l,bias", [(2, 7, None, True), (1, 49, 16, True), (3, 20, 8, False)])
def test_triton_matches_reference(N, L, block_l, bias):
    pytest.importorskip("triton")
    from kernels.selective_scan.triton_impl import selective_scan_triton_bwd, selective_scan_triton_fwd

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    u, delta, A, B, db = (t.to(dev) for t in _inputs(2, 3, N, L))
    db = db if bias else None  # (several states x several blocks: the per-program sums over states)
    h_ref = selective_scan_ref(u, delta, A, B, db)
    g = torch.randn_like(h_ref)
    h = selective_scan_triton_fwd(u, delta, A, B, db, block_l=block_l)
    assert_close(h, h_ref, 1e-6, 1e-5, what="h")
    ref = selective_scan_ref_bwd(g, u, delta, A, B, db)
    for given_h in (None, h):  # states recomputed, or the forward's output as the op hands it over
        for name, a, r in zip(NAMES, selective_scan_triton_bwd(g, u, delta, A, B, db, block_l=block_l, h=given_h),
                              ref):
            assert_close(a, r, 1e-5, 2e-5, what=f"d{name} h given={given_h is not None}")


@pytest.mark.triton
def test_triton_through_the_op_with_half_inputs():
    pytest.importorskip("triton")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    u, delta, A, B, db = (t.to(dev) for t in _inputs(1, 2, 1, 12, dtype=torch.float16))
    leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, db)]
    h = selective_scan(*leaves, impl="triton")
    assert h.dtype == torch.float32 and torch.isfinite(h).all()
    h.sum().backward()
    ref = [t.clone().requires_grad_() for t in (u.float(), delta.float(), A, B.float(), db)]
    selective_scan_ref(*ref).sum().backward()
    assert_close(h, selective_scan_ref(u.float(), delta.float(), A, B.float(), db), 1e-6, 1e-5, what="h")
    for name, a, r in zip(NAMES, leaves, ref):
        assert a.grad.dtype == a.dtype and torch.isfinite(a.grad).all()
        assert_close(a.grad.float(), r.grad, 1e-3, 2e-3, what=f"d{name}")
