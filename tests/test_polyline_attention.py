"""Tests of kernels.polyline_attention: reference semantics, memory-efficient torch path, compiled CPU paths,
Triton path."""

import pytest
import torch

from kernels.polyline_attention import (
    FVCORE_OP_HANDLES,
    polyline_attention,
    polyline_attention_reference,
    polyline_mask,
    polyline_mask_bruteforce,
    structured_mask_1d,
    triton_available,
)
from kernels.polyline_attention import _resolve_impl
from kernels.polyline_attention.cpp_impl import cpp_available, cpp_unavailable_reason
from kernels.polyline_attention.naive import axial_masks
from helpers import assert_close


def _inputs(b, n, h, w, d, dv=None, dtype=torch.float64, decay=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    dv = d if dv is None else dv
    q = torch.randn(b, n, h, w, d, generator=g, dtype=dtype)
    k = torch.randn(b, n, h, w, d, generator=g, dtype=dtype)
    v = torch.randn(b, n, h, w, dv, generator=g, dtype=dtype)
    la = -decay * torch.rand(b, n, h, w, generator=g, dtype=dtype) - 1e-3
    lb = -decay * torch.rand(b, n, h, w, generator=g, dtype=dtype) - 1e-3
    return [t.requires_grad_() for t in (q, k, v, la, lb)]


def _err(a, b):
    d = (a.detach() - b.detach()).abs()
    return f"max abs err {d.max().item():.3e}, mean {d.mean().item():.3e}"


# ------------------------------------------------------------------------------------------ reference
@pytest.mark.parametrize("h,w", [(1, 1), (1, 4), (3, 1), (2, 3), (3, 3)])
def test_mask_equals_bruteforce_path_product(h, w):
    *_, la, lb = _inputs(1, 2, h, w, 2)
    m = polyline_mask(la, lb)
    bf = polyline_mask_bruteforce(la, lb)
    assert_close(m, bf, 1e-12, what="mask vs brute force")
    # M^T is the other L-path: vertical along the query's column first, then along the key's row
    mt = torch.zeros_like(m)
    for i in range(h):
        for j in range(w):
            for i2 in range(h):
                for j2 in range(w):
                    s = sum(lb[:, :, r, j] for r in range(min(i, i2) + 1, max(i, i2) + 1)) + \
                        sum(la[:, :, i2, c] for c in range(min(j, j2) + 1, max(j, j2) + 1))
                    mt[:, :, i * w + j, i2 * w + j2] = s
    assert_close(m.transpose(-1, -2), mt, 1e-12, what="M^T vs brute force")


def test_mask_1d_is_official_segsum():
    a = -torch.rand(3, 6, dtype=torch.float64)
    m = structured_mask_1d(a)
    for x in range(6):
        for y in range(6):
            want = a[:, min(x, y) + 1:max(x, y) + 1].sum(-1)
            assert_close(m[:, x, y], want, 1e-12, what=f"L[{x},{y}]")


def _dense_full(q, k, v, la, lb, scale):
    b, n, h, w, d = q.shape
    m = polyline_mask_bruteforce(la, lb)
    s = scale * q.flatten(2, 3) @ k.flatten(2, 3).transpose(-1, -2)
    p = 0.5 * torch.softmax(s + m, -1) + 0.5 * torch.softmax(s + m.transpose(-1, -2), -1)
    return (p @ v.flatten(2, 3)).view(b, n, h, w, -1)


def _dense_criss_cross(q, k, v, la, lb, scale):
    """Both axial orders written as dense N x N products of the axial softmax matrices."""
    b, n, h, w, d = q.shape
    lw, lh = axial_masks(la, lb)
    aw = torch.softmax(scale * q @ k.transpose(-1, -2) + lw, -1)  # (b, n, H, W, W)
    qh, kh = q.transpose(2, 3), k.transpose(2, 3)
    ah = torch.softmax(scale * qh @ kh.transpose(-1, -2) + lh, -1)  # (b, n, W, H, H)
    N = h * w
    eye_h, eye_w = torch.eye(h, dtype=q.dtype), torch.eye(w, dtype=q.dtype)
    # row operator R[(i,j),(i',j')] = delta(i,i') Aw_i[j,j'], column operator C[(i,j),(i',j')] = delta(j,j') Ah_j[i,i']
    R = torch.einsum('bnijk,il->bnijlk', aw, eye_h).reshape(b, n, N, N)
    C = torch.einsum('bnjil,jk->bnijlk', ah, eye_w).reshape(b, n, N, N)
    P = 0.5 * C @ R + 0.5 * R @ C
    return (P @ v.flatten(2, 3)).view(b, n, h, w, -1)


@pytest.mark.parametrize("mode", ["full", "criss_cross"])
def test_reference_matches_independent_dense(mode):
    q, k, v, la, lb = _inputs(1, 2, 3, 4, 3, dv=5)
    ref = polyline_attention_reference(q, k, v, la, lb, mode, 0.7)
    dense = (_dense_full if mode == "full" else _dense_criss_cross)(q, k, v, la, lb, 0.7)
    assert_close(ref, dense, 1e-12, what=mode)


def test_post_softmax_placement():
    q, k, v, la, lb = _inputs(1, 1, 2, 3, 2)
    m = polyline_mask(la, lb)
    s = q.flatten(2, 3) @ k.flatten(2, 3).transpose(-1, -2)
    p = torch.softmax(s, -1) * 0.5 * (m.exp() + m.transpose(-1, -2).exp())
    want = (p @ v.flatten(2, 3)).view_as(v)
    got = polyline_attention(q, k, v, la, lb, scale=1.0, mask_placement="post_softmax")
    assert_close(got, want, 1e-12, what="post_softmax")
    logits = polyline_attention(q, k, v, la, lb, scale=1.0)
    assert not torch.allclose(got, logits)


# ------------------------------------------------------------------------------------------ torch path
SHAPES = [(1, 13), (13, 1), (3, 7), (13, 3), (1, 1)]


@pytest.mark.parametrize("mode", ["full", "criss_cross"])
@pytest.mark.parametrize("h,w", SHAPES)
def test_torch_path_matches_reference_fp64(mode, h, w):
    q, k, v, la, lb = _inputs(2, 2, h, w, 4, dv=3, seed=h * 31 + w)
    gout = torch.randn(2, 2, h, w, 3, dtype=torch.float64)
    ref = polyline_attention_reference(q, k, v, la, lb, mode, 0.8)
    gref = torch.autograd.grad(ref, (q, k, v, la, lb), gout)
    # small blocks so that the tiles cut the grid into several row blocks on both sides
    out = polyline_attention(q, k, v, la, lb, mode=mode, scale=0.8, impl="torch", block_q=2 * w, block_k=3 * w)
    gout_ = torch.autograd.grad(out, (q, k, v, la, lb), gout)
    assert_close(out, ref, 1e-12, what=f"{mode} forward")
    for name, a, b in zip(["q", "k", "v", "log_a", "log_b"], gout_, gref):
        assert_close(a, b, 1e-11, what=f"{mode} grad {name}")


@pytest.mark.parametrize("mode", ["full", "criss_cross"])
def test_torch_path_matches_reference_fp32(mode):
    q, k, v, la, lb = (t.detach().float().requires_grad_() for t in _inputs(1, 2, 7, 13, 8, decay=1.0))
    gout = torch.randn(1, 2, 7, 13, 8)
    ref = polyline_attention_reference(q, k, v, la, lb, mode)
    gref = torch.autograd.grad(ref, (q, k, v, la, lb), gout)
    out = polyline_attention(q, k, v, la, lb, mode=mode, impl="torch", block_q=26, block_k=39)
    gout_ = torch.autograd.grad(out, (q, k, v, la, lb), gout)
    assert_close(out, ref, 2e-6, what=f"{mode} forward fp32")
    for name, a, b in zip(["q", "k", "v", "log_a", "log_b"], gout_, gref):
        assert_close(a, b, 1e-4, 1e-4, what=f"{mode} grad {name} fp32")


@pytest.mark.parametrize("mode", ["full", "criss_cross"])
def test_gradcheck_fp64(mode):
    inputs = _inputs(1, 2, 2, 3, 2, dv=2)
    fn = lambda *t: polyline_attention(*t, mode=mode, scale=0.9, impl="torch", block_q=3, block_k=3)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_gradient_tie_positions_match_official():
    """With equal prefix sums (zero decays) gradients follow positions as the official tril/triu autograd."""
    q, k, v, la, lb = _inputs(1, 1, 3, 4, 2)
    with torch.no_grad():
        la[..., 1:3] = 0.0
        lb[..., 1, :] = 0.0
    gout = torch.randn(1, 1, 3, 4, 2, dtype=torch.float64)
    for mode in ("full", "criss_cross"):
        gref = torch.autograd.grad(polyline_attention_reference(q, k, v, la, lb, mode), (la, lb), gout)
        for impl in ("torch", "cpp") if cpp_available() else ("torch",):
            got = torch.autograd.grad(polyline_attention(q, k, v, la, lb, mode=mode, impl=impl, block_q=4,
                                                         block_k=4), (la, lb), gout)
            for a, b in zip(got, gref):
                assert_close(a, b, 1e-12, what=f"{mode} {impl} tie grads")


# ------------------------------------------------------------------------------------- compiled CPU paths
needs_cpp = pytest.mark.skipif(not cpp_available(), reason=f"CPU extension not built: {cpp_unavailable_reason()}")
MODES2 = ["full", "criss_cross"]

# lines and planes shorter and longer than a register tile (16), not multiples of it; head dims below, at and
# above it
CPP_CASES = [(1, 13, 4, 3), (13, 1, 4, 4), (3, 7, 5, 6), (19, 17, 20, 16), (5, 37, 16, 33), (1, 1, 2, 2)]


def _grads_of(impl, mode, inputs, gout, scale):
    out = polyline_attention(*inputs, mode=mode, scale=scale, impl=impl)
    return out, torch.autograd.grad(out, inputs, gout)


@needs_cpp
@pytest.mark.parametrize("mode", MODES2)
@pytest.mark.parametrize("h,w,d,dv", CPP_CASES)
def test_cpp_matches_reference_fp64(mode, h, w, d, dv):
    inputs = _inputs(2, 2, h, w, d, dv=dv, seed=h * 7 + w)
    gout = torch.randn(2, 2, h, w, dv, dtype=torch.float64)
    ref, gref = _grads_of("reference", mode, inputs, gout, 0.8)
    out, grads = _grads_of("cpp", mode, inputs, gout, 0.8)
    assert_close(out, ref, 1e-12, what=f"cpp {mode} forward")
    for name, a, b in zip(["q", "k", "v", "log_a", "log_b"], grads, gref):
        assert_close(a, b, 1e-11, what=f"cpp {mode} grad {name}")


@needs_cpp
@pytest.mark.parametrize("mode", MODES2)
@pytest.mark.parametrize("threads", [1, 2])
def test_cpp_fp32_threads(mode, threads):
    """fp32 at a stage-like shape (lines of 28 and 21, head dim 16) on one and two threads, against the fp64
    reference (the fp32 reference itself is 3e-6 / 1.4e-5 from it)."""
    inputs = [t.detach().float().requires_grad_() for t in _inputs(2, 3, 21, 28, 16, decay=1.0, seed=3)]
    gout = torch.randn(2, 3, 21, 28, 16)
    ref, gref = _grads_of("reference", mode, [t.detach().double().requires_grad_() for t in inputs], gout.double(),
                          1.0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, grads = _grads_of("cpp", mode, inputs, gout, 1.0)
    finally:
        torch.set_num_threads(before)
    assert_close(out.double(), ref, 8e-6, what=f"cpp {mode} forward fp32")
    for name, a, b in zip(["q", "k", "v", "log_a", "log_b"], grads, gref):
        assert_close(a.double(), b, 5e-5, what=f"cpp {mode} grad {name} fp32")


@needs_cpp
@pytest.mark.parametrize("mode", MODES2)
def test_cpp_gradcheck_fp64(mode):
    inputs = _inputs(1, 2, 3, 4, 3, dv=2)
    fn = lambda *t: polyline_attention(*t, mode=mode, scale=0.9, impl="cpp")
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


@needs_cpp
@pytest.mark.parametrize("mode", MODES2)
def test_cpp_half_inputs(mode):
    inputs = [t.detach().bfloat16().requires_grad_() for t in _inputs(1, 2, 6, 9, 16, seed=5)]
    out = polyline_attention(*inputs, mode=mode, impl="cpp")
    out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16 and all(t.grad.dtype == torch.bfloat16 for t in inputs)
    ref = polyline_attention_reference(*(t.detach().double() for t in inputs), mode)
    assert (out.double() - ref).abs().max() < 2e-2, _err(out.double(), ref)


def test_cpp_dispatch():
    q = torch.zeros(1, 1, 2, 2, 2)
    for mode in MODES2:
        assert _resolve_impl("auto", mode, q) == ("cpp" if cpp_available() else "torch")
        if not cpp_available():
            with pytest.raises(RuntimeError, match="kernels.build_cpu"):
                _resolve_impl("cpp", mode, q)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_forward_n4200_finite(dtype):
    q, k, v, la, lb = (t.detach() for t in _inputs(1, 1, 60, 70, 32, dtype=torch.float32, decay=0.3))
    q, k, v = (3 * q).to(dtype), k.to(dtype), v.to(dtype)  # 3x: large logits
    out = polyline_attention(q, k, v, la.to(dtype), lb.to(dtype), impl="torch")
    assert out.dtype == dtype and out.shape == v.shape
    assert torch.isfinite(out).all(), "NaN/Inf in low-precision output"
    ref = polyline_attention(q.float(), k.float(), v.float(), la.to(dtype).float(), lb.to(dtype).float(),
                             impl="torch")
    assert (out.float() - ref).abs().max() < 0.05, _err(out.float(), ref)


def test_large_logits_stable():
    q, k, v, la, lb = (t.detach().float() for t in _inputs(1, 1, 5, 6, 4))
    out = polyline_attention(q * 200, k * 200, v, la * 50, lb * 50, impl="torch", block_q=6, block_k=12)
    ref = polyline_attention_reference(q * 200, k * 200, v, la * 50, lb * 50)
    assert torch.isfinite(out).all()
    assert_close(out, ref, 1e-4, what="large logits")


def test_entry_point_errors():
    q, k, v, la, lb = _inputs(1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match="mode"):
        polyline_attention(q, k, v, la, lb, mode="diagonal")
    with pytest.raises(ValueError, match="impl"):
        polyline_attention(q, k, v, la, lb, impl="cuda")
    with pytest.raises(ValueError, match="mask_placement"):
        polyline_attention(q, k, v, la, lb, mask_placement="after")
    with pytest.raises(ValueError, match="expected"):
        polyline_attention(q, k, v, la[..., :1], lb)


def test_custom_ops_opcheck():
    q, k, v, la, lb = (t.detach().float().requires_grad_() for t in _inputs(1, 2, 2, 3, 4))
    for impl in ("torch", "cpp") if cpp_available() else ("torch",):
        torch.library.opcheck(torch.ops.ppma.polyline_full.default, (q, k, v, la, lb, 1.0, impl, 0, 0))
        torch.library.opcheck(torch.ops.ppma.polyline_criss_cross.default, (q, k, v, la, lb, 1.0, impl))


@pytest.mark.slow
def test_torch_compile_single_op():
    q, k, v, la, lb = (t.detach().float().requires_grad_() for t in _inputs(1, 2, 3, 4, 4))
    fn = torch.compile(lambda *t: polyline_attention(*t, impl="torch"), backend="aot_eager", fullgraph=True)
    out = fn(q, k, v, la, lb)
    out.sum().backward()
    ref = polyline_attention_reference(q, k, v, la, lb)
    assert_close(out, ref, 1e-5, what="compiled")


def test_fvcore_handles():
    from fvcore.nn import FlopCountAnalysis

    class M(torch.nn.Module):
        def __init__(self, mode):
            super().__init__()
            self.mode = mode

        def forward(self, q, k, v, la, lb):
            return polyline_attention(q, k, v, la, lb, mode=self.mode, impl="torch")

    q, k, v, la, lb = (t.detach().float() for t in _inputs(2, 3, 4, 5, 8, dv=6))
    for mode, want in (("full", 2 * 3 * 20 * 20 * (8 + 6)), ("criss_cross", 2 * 3 * (4 * 25 + 5 * 16) * (8 + 12))):
        fa = FlopCountAnalysis(M(mode), (q, k, v, la, lb)).set_op_handle(**FVCORE_OP_HANDLES)
        fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert fa.total() == want, (mode, fa.total(), want)


# ------------------------------------------------------------------------------------------ triton
triton_only = pytest.mark.skipif(not triton_available(), reason="triton not installed")


@pytest.fixture(params=["flat", "rows"])
def triton_layout(request):
    """Both tile layouts of the Triton kernels (flat token tiles; image-row segments)."""
    from kernels.polyline_attention.triton_impl import use_layout

    with use_layout(request.param):
        yield request.param


@pytest.mark.triton
@triton_only
# flat layout: widths 7 and 5 per-entry atomics in the backward, 13 and 40 row-grouped sums (4 and 2 rows per
# tile); row layout: 7, 5, 13 one padded segment per row, 40 two segments (32 + 8)
@pytest.mark.parametrize("h,w,d,dv", [(3, 7, 8, 11), (1, 5, 4, 4), (3, 13, 8, 8), (2, 40, 4, 6)])
def test_triton_matches_reference(h, w, d, dv, triton_layout):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v, la, lb = (t.detach().float().to(dev).requires_grad_() for t in _inputs(1, 2, h, w, d, dv=dv))
    gout = torch.randn(1, 2, h, w, dv, device=dev)
    ref = polyline_attention_reference(q, k, v, la, lb, "full", 0.6)
    gref = torch.autograd.grad(ref, (q, k, v, la, lb), gout)
    out = polyline_attention(q, k, v, la, lb, scale=0.6, impl="triton")
    got = torch.autograd.grad(out, (q, k, v, la, lb), gout)
    assert_close(out, ref, 1e-5, what="triton forward")
    for name, a, b in zip(["q", "k", "v", "log_a", "log_b"], got, gref):
        assert_close(a, b, 2e-5, 1e-4, what=f"triton grad {name}")


@pytest.mark.triton
@triton_only
@pytest.mark.parametrize("h,w", [(3, 7), (2, 40)])
def test_triton_half_dots_match_reference(h, w, triton_layout):
    """fp16 inputs take the tensor-core path (fp16 dot operands, fp32 accumulation; bf16 takes it on GPUs):
    forward and every gradient against the fp32 reference on the same fp16-rounded inputs."""
    from kernels.polyline_attention.triton_impl import _half_dots

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    leaves = [t.detach().to(dev).half().requires_grad_() for t in _inputs(1, 2, h, w, 16, dv=16, seed=1)]
    assert _half_dots(*leaves[:3])
    gout = torch.randn(1, 2, h, w, 16, device=dev).half()
    out = polyline_attention(*leaves, scale=0.25, impl="triton")
    got = torch.autograd.grad(out, leaves, gout)
    ref_leaves = [t.detach().float().requires_grad_() for t in leaves]
    ref = polyline_attention_reference(*ref_leaves, "full", 0.25)
    gref = torch.autograd.grad(ref, ref_leaves, gout.float())
    assert out.dtype == torch.float16
    # (measured under the interpreter: max abs errors 4e-4 - 1.1e-3 at values up to ~4)
    assert_close(out.float(), ref, 2e-3, what="half-dot forward")
    for name, a, b in zip(["q", "k", "v", "log_a", "log_b"], got, gref):
        assert a.dtype == torch.float16
        assert_close(a.float(), b, 4e-3, 2e-3, what=f"half-dot grad {name}")


@pytest.mark.triton
@triton_only
def test_triton_backward_alerts_under_deterministic_mode():
    from kernels.polyline_attention.triton_impl import alert_not_deterministic

    alert_not_deterministic("x")  # deterministic mode off: nothing
    try:
        torch.use_deterministic_algorithms(True)
        with pytest.raises(RuntimeError, match="x adds gradients with atomics.*impl='torch'"):
            alert_not_deterministic("x")
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="not bitwise reproducible"):
            alert_not_deterministic("x")
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.triton
@triton_only
def test_triton_bf16_forward_finite():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v, la, lb = (t.detach().to(dev).to(torch.bfloat16) for t in _inputs(1, 1, 4, 5, 16, dtype=torch.float32))
    out = polyline_attention(q, k, v, la, lb, impl="triton")
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    ref = polyline_attention_reference(q.float(), k.float(), v.float(), la.float(), lb.float())
    assert (out.float() - ref).abs().max() < 0.03, _err(out.float(), ref)
