"""kernels.manhattan_attention: RMT's Manhattan-decay attention. The reference against brute-force masks, the
PyTorch path (SDPA where it applies, never its guard passes) and the compiled CPU path against the reference on
the forward and every gradient."""
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from kernels.manhattan_attention import (biased_attention, manhattan_attention, manhattan_attention_reference,
                                         manhattan_masks, masks_needed)
from kernels.manhattan_attention import cpp_impl
from kernels.manhattan_attention import _resolve_impl
from helpers import assert_close

needs_cpp = pytest.mark.skipif(not cpp_impl.cpp_available(),
                               reason=f"CPU extension not built: {cpp_impl.cpp_unavailable_reason()}")
MODES = ["full", "axial"]


def _decay(n, dtype=torch.float64):
    """RMT's per-head log decays (init 2, heads range 4)."""
    return torch.log(1 - 2 ** (-2 - 4 * torch.arange(n, dtype=dtype) / n))


def _inputs(b, n, h, w, d, dv=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, h, w, c, generator=g, dtype=dtype, requires_grad=True) for c in (d, d, dv or d)]


def _grads(impl, mode, qkv, decay, gout, scale):
    out = manhattan_attention(*qkv, decay, mode=mode, scale=scale, impl=impl)
    return out, torch.autograd.grad(out, qkv, gout)


# ------------------------------------------------------------------------------------------------ reference
def test_masks_equal_bruteforce_distances():
    decay = _decay(3)
    h, w = 3, 5
    (full,) = manhattan_masks(decay, h, w, "full")
    mask_h, mask_w = manhattan_masks(decay, h, w, "axial")
    for i in range(h * w):
        for j in range(h * w):
            dist = abs(i // w - j // w) + abs(i % w - j % w)
            torch.testing.assert_close(full[0, :, i, j], decay * dist, rtol=0, atol=0)
    assert full.shape == (1, 3, 15, 15) and mask_h.shape == (3, 3, 3) and mask_w.shape == (3, 5, 5)
    torch.testing.assert_close(mask_w[:, 4, 1], decay * 3, rtol=0, atol=0)


def test_axial_reference_is_rows_then_columns():
    """The official chunkwise order: row attention first, its output the values of the column attention."""
    q, k, v = (t.detach() for t in _inputs(1, 2, 3, 4, 5, seed=1))
    decay = _decay(2)
    rows = torch.empty_like(v)
    for i in range(3):
        s = q[:, :, i] @ k[:, :, i].transpose(-1, -2) * 0.5 + manhattan_masks(decay, 1, 4, "full")[0]
        rows[:, :, i] = torch.softmax(s, -1) @ v[:, :, i]
    out = torch.empty_like(v)
    for j in range(4):
        s = q[:, :, :, j] @ k[:, :, :, j].transpose(-1, -2) * 0.5 + manhattan_masks(decay, 3, 1, "full")[0]
        out[:, :, :, j] = torch.softmax(s, -1) @ rows[:, :, :, j]
    torch.testing.assert_close(manhattan_attention_reference(q, k, v, decay, "axial", 0.5), out, rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------------------ torch path
def test_biased_attention_equals_sdpa_forward_and_every_gradient():
    q, k, v = (t.detach()[:, :, :, 0].requires_grad_() for t in _inputs(2, 3, 14, 1, 8))  # (2, 3, 14, 8)
    bias = (-torch.rand(3, 14, 14, dtype=torch.float64) * 4).requires_grad_()
    gout = torch.randn(2, 3, 14, 8, dtype=torch.float64)
    got = biased_attention(q, k, v, bias, scale=0.7)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.7)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, (q, k, v, bias), gout), torch.autograd.grad(want, (q, k, v, bias), gout)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_torch_path_axial_has_no_fully_masked_row_guard():
    """SDPA's CPU math path scans the scores for rows that are all -inf (isneginf / all / where); a finite
    decay mask never has one, and the scan cost ~5 % of an RMT-T training step."""
    q, k, v = (t.detach().float() for t in _inputs(2, 3, 4, 5, 8, seed=1))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        manhattan_attention(q, k, v, _decay(3, torch.float32), mode="axial", impl="torch")
    names = {e.key for e in prof.key_averages()}
    assert not names & {"aten::isneginf", "aten::all", "aten::_safe_softmax"}, names
    assert "aten::_softmax" in names


@pytest.mark.parametrize("mode,min_keys", [("full", 0), ("full", None), ("axial", 0)])
def test_torch_path_equals_reference(mode, min_keys, monkeypatch):
    """Full mode takes SDPA's fused CPU kernel (no N x N softmax) from kernels.fused_attention.CPU_MIN_KEYS keys
    on (0 here; the default, 64, is more than this grid's 20), the axial mode the explicit ops."""
    import kernels.fused_attention

    if min_keys is not None:
        monkeypatch.setattr(kernels.fused_attention, "CPU_MIN_KEYS", min_keys)
    qkv = _inputs(2, 3, 4, 5, 8, seed=2)  # (SDPA's flash kernel needs equal head dims of q and v)
    decay, gout = _decay(3), torch.randn(2, 3, 4, 5, 8, dtype=torch.float64)
    ref, gref = _grads("reference", mode, qkv, decay, gout, 0.7)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out, grads = _grads("torch", mode, qkv, decay, gout, 0.7)
    names = {e.key for e in prof.key_averages()}
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    fused = mode == "full" and min_keys == 0
    assert (flash in names and "aten::_softmax" not in names) if fused else flash not in names, names
    assert_close(out, ref, 1e-12, what=f"torch {mode} forward")
    for name, a, b in zip("qkv", grads, gref):
        assert_close(a, b, 1e-12, what=f"torch {mode} grad {name}")


# ------------------------------------------------------------------------------------------------ compiled path
# grids with lines shorter and longer than a register tile (16), not multiples of it; head dims below, at, above
CPP_CASES = [(1, 13, 4, 3), (13, 1, 4, 4), (3, 7, 5, 6), (19, 17, 20, 16), (5, 37, 16, 33), (1, 1, 2, 2)]


@needs_cpp
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("h,w,d,dv", CPP_CASES)
def test_cpp_matches_reference_fp64(mode, h, w, d, dv):
    qkv = _inputs(2, 3, h, w, d, dv=dv, seed=h * 7 + w)
    decay, gout = _decay(3), torch.randn(2, 3, h, w, dv, dtype=torch.float64)
    ref, gref = _grads("reference", mode, qkv, decay, gout, 0.8)
    out, grads = _grads("cpp", mode, qkv, decay, gout, 0.8)
    assert_close(out, ref, 1e-12, what=f"cpp {mode} forward")
    for name, a, b in zip("qkv", grads, gref):
        assert_close(a, b, 1e-11, what=f"cpp {mode} grad {name}")


@needs_cpp
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threads", [1, 2])
def test_cpp_fp32_threads(mode, threads):
    """fp32 at a stage-like shape (lines of 21 and 28, head dim 16), one and two threads, against fp64."""
    qkv = [t.detach().float().requires_grad_() for t in _inputs(2, 3, 21, 28, 16, seed=3)]
    gout = torch.randn(2, 3, 21, 28, 16)
    ref, gref = _grads("reference", mode, [t.detach().double().requires_grad_() for t in qkv], _decay(3),
                       gout.double(), 0.25)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, grads = _grads("cpp", mode, qkv, _decay(3, torch.float32), gout, 0.25)
    finally:
        torch.set_num_threads(before)
    assert_close(out.double(), ref, 5e-6, what=f"cpp {mode} forward fp32")
    for name, a, b in zip("qkv", grads, gref):
        assert_close(a.double(), b, 3e-5, what=f"cpp {mode} grad {name} fp32")


@needs_cpp
@pytest.mark.parametrize("mode", MODES)
def test_cpp_gradcheck_fp64(mode):
    qkv = _inputs(1, 2, 3, 4, 3, dv=2)
    fn = lambda *t: manhattan_attention(*t, _decay(2), mode=mode, scale=0.9, impl="cpp")
    assert torch.autograd.gradcheck(fn, qkv, eps=1e-6, atol=1e-6)


@needs_cpp
@pytest.mark.parametrize("mode", MODES)
def test_cpp_half_inputs(mode):
    qkv = [t.detach().bfloat16().requires_grad_() for t in _inputs(1, 2, 6, 9, 16, seed=5)]
    out = manhattan_attention(*qkv, _decay(2, torch.float32), mode=mode, impl="cpp")
    out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16 and all(t.grad.dtype == torch.bfloat16 for t in qkv)
    ref = manhattan_attention_reference(*(t.detach().double() for t in qkv), _decay(2), mode, 0.25)
    assert_close(out.double(), ref, 2e-2, what=f"cpp {mode} bf16")


@needs_cpp
def test_cpp_large_logits_stable():
    q, k, v = (t.detach().float() for t in _inputs(1, 1, 5, 6, 4))
    out = manhattan_attention(q * 200, k * 200, v, _decay(1, torch.float32) * 50, impl="cpp")
    ref = manhattan_attention_reference(*(t.double() for t in (q * 200, k * 200, v)), _decay(1) * 50, "full", 0.5)
    assert torch.isfinite(out).all()
    assert_close(out.double(), ref, 1e-4, what="large logits")


@needs_cpp
def test_planes_op_opcheck():
    q, k, v = (t.detach().float().reshape(2, 3, 5, -1).requires_grad_() for t in _inputs(1, 2, 3, 5, 4))
    torch.library.opcheck(torch.ops.rmt.manhattan_planes.default, (q, k, v, torch.full((2,), -0.3), 0.5))


@needs_cpp
@pytest.mark.slow
def test_torch_compile_single_op():
    qkv = [t.detach().float().requires_grad_() for t in _inputs(1, 2, 3, 4, 4)]
    fn = torch.compile(lambda *t: manhattan_attention(*t, _decay(2, torch.float32), mode="axial", impl="cpp"),
                       backend="aot_eager", fullgraph=True)
    out = fn(*qkv)
    out.sum().backward()
    ref = manhattan_attention_reference(*qkv, _decay(2, torch.float32), "axial", 0.5)
    assert_close(out, ref, 1e-5, what="compiled")


# ------------------------------------------------------------------------------------------------ dispatch
def test_dispatch_and_errors():
    q, k, v = _inputs(1, 2, 2, 3, 4)
    decay = _decay(2)
    built = cpp_impl.cpp_available()
    assert _resolve_impl("auto", q) == ("cpp" if built else "torch")
    assert masks_needed(q) is not built and masks_needed(q, "torch")
    assert _resolve_impl("auto", q, decay.clone().requires_grad_()) == "torch"  # no decay gradient in the kernel
    with pytest.raises(ValueError, match="decay"):
        _resolve_impl("cpp", q, decay.clone().requires_grad_())
    with pytest.raises(ValueError, match="CPU tensors"):
        _resolve_impl("cpp", torch.empty(1, 2, 2, 3, 4, device="meta"))
    if not built:
        with pytest.raises(RuntimeError, match="kernels.build_cpu"):
            _resolve_impl("cpp", q)
    with pytest.raises(ValueError, match="mode"):
        manhattan_attention(q, k, v, decay, mode="chunk")
    with pytest.raises(ValueError, match="impl"):
        manhattan_attention(q, k, v, decay, impl="triton")
    with pytest.raises(ValueError, match="decay"):
        manhattan_attention(q, k, v, decay[:1])


def test_traced_calls_run_the_official_ops():
    """FLOP counters trace the model: they must see the official matmuls, not a custom op."""
    q, k, v = (t.detach().float() for t in _inputs(1, 2, 3, 4, 4))
    traced = torch.jit.trace(lambda q, k, v: manhattan_attention(q, k, v, _decay(2, torch.float32), mode="axial"),
                             (q, k, v))
    kinds = {node.kind() for node in traced.graph.nodes()}
    assert "aten::matmul" in kinds and not any(kind.startswith("rmt::") for kind in kinds), kinds


def test_fused_attention_rule():
    """SDPA on accelerators always; on CPU from CPU_MIN_KEYS keys on (P2T's 54 pooled keys and PaCa's 49
    clusters at 224^2 run the explicit ops, PaCa's 100 clusters and RMT's full stages SDPA)."""
    from kernels.fused_attention import CPU_MIN_KEYS, fused_attention_pays

    assert CPU_MIN_KEYS == 64
    cpu, meta = torch.empty(1), torch.empty(1, device="meta")
    assert not fused_attention_pays(cpu, 54) and not fused_attention_pays(cpu, 49)
    assert fused_attention_pays(cpu, 64) and fused_attention_pays(cpu, 100) and fused_attention_pays(meta, 1)
