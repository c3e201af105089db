"""kernels.depthwise_conv: the compiled CPU weight / bias gradients of the depthwise convolution against the
shifted-sums reference (forward and every gradient, awkward shapes and strides, fp64 gradcheck), the dispatch,
and models._layers.DepthwiseConv2d as a drop-in nn.Conv2d."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kernels.depthwise_conv import cpp_impl, depthwise_conv2d, depthwise_conv2d_reference
from kernels.depthwise_conv import _resolve_impl
from helpers import assert_close

needs_cpp = pytest.mark.skipif(not cpp_impl.cpp_available(),
                               reason=f"CPU extension not built: {cpp_impl.cpp_unavailable_reason()}")


def _input(b, c, h, w, layout, dtype=torch.float32, seed=0):
    """(B, C, H, W) in one of the layouts the models give a depthwise conv."""
    g = torch.Generator().manual_seed(seed)
    if layout == "nchw":
        x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    elif layout == "channels_last":
        x = torch.randn(b, h, w, c, generator=g, dtype=dtype).permute(0, 3, 1, 2)
    else:  # "pixel_strided": a channel slice of wider tokens (MPViT's CRPE splits v out of its qkv tensor)
        x = torch.randn(b, h, w, 3 * c + 1, generator=g, dtype=dtype)[..., c + 1:2 * c + 1].permute(0, 3, 1, 2)
    return x.requires_grad_()


def _params(c, kh, kw, bias, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, 1, kh, kw, generator=g, dtype=dtype).requires_grad_()
    return w, (torch.randn(c, generator=g, dtype=dtype).requires_grad_() if bias else None)


def _forward_and_grads(impl, x, w, b, padding, gout):
    out = depthwise_conv2d(x, w, b, padding, impl=impl)
    inputs = (x, w) if b is None else (x, w, b)
    return (out, *torch.autograd.grad(out, inputs, gout))


def test_reference_equals_conv2d_by_brute_force():
    """The reference's shifted sums against an explicit per-pixel loop (fp64), on a tiny case."""
    x, (w, b) = _input(1, 2, 4, 5, "nchw", torch.float64), _params(2, 3, 2, True, torch.float64)
    out = depthwise_conv2d_reference(x, w, b, (1, 0))
    xp = F.pad(x, (0, 0, 1, 1))
    expect = torch.empty(1, 2, 4, 4, dtype=torch.float64)
    for c in range(2):
        for y in range(4):
            for z in range(4):
                expect[0, c, y, z] = b[c] + (w[c, 0] * xp[0, c, y:y + 3, z:z + 2]).sum()
    assert_close(out, expect, 1e-12, what="reference")
    assert_close(out, F.conv2d(x, w, b, 1, (1, 0), 1, 2), 1e-12, what="F.conv2d")


@needs_cpp
@pytest.mark.parametrize("b,c,h,w,kh,kw,padding,bias,layout", [
    (2, 37, 11, 13, 5, 5, (2, 2), True, "channels_last"),  # channels not a multiple of the 16-lane block
    (1, 16, 9, 7, 7, 7, (3, 3), False, "pixel_strided"),  # a padding wider than half the grid's width
    (3, 29, 6, 10, 3, 5, (1, 2), True, "nchw"),  # non-square kernel, contiguous input (copied channels-last);
    # 29 channels: one block of 16 lanes, one of 8, 5 left
    (2, 5, 8, 9, 5, 3, (0, 1), True, "channels_last"),  # no padding along H: a smaller output
    (1, 33, 1, 12, 5, 5, (2, 2), True, "channels_last"),  # one row: every tap row but the middle is padding
    (2, 1, 7, 6, 5, 5, (2, 2), True, "nchw"),  # one channel (its stride is not 1 in either layout)
])
def test_cpp_matches_reference_forward_and_every_gradient(b, c, h, w, kh, kw, padding, bias, layout):
    x = _input(b, c, h, w, layout)
    wt, bt = _params(c, kh, kw, bias)
    ho, wo = h + 2 * padding[0] - kh + 1, w + 2 * padding[1] - kw + 1
    gout = torch.randn(b, wo, ho, c).permute(0, 3, 2, 1)  # an output gradient of yet another layout
    ref = _forward_and_grads("reference", x, wt, bt, padding, gout)
    got = _forward_and_grads("cpp", x, wt, bt, padding, gout)
    for name, r, g in zip(("out", "dx", "dw", "db"), ref, got):
        assert_close(g, r, 1e-5, 1e-5, what=name)


@needs_cpp
def test_cpp_is_torch_bit_for_bit_except_weight_and_bias_gradients():
    """The forward and the input gradient are PyTorch's own: the models' eval outputs do not change."""
    x = _input(2, 24, 10, 12, "channels_last")
    wt, bt = _params(24, 5, 5, True)
    gout = torch.randn(2, 10, 12, 24).permute(0, 3, 1, 2)
    out_t, dx_t, dw_t, db_t = _forward_and_grads("torch", x, wt, bt, (2, 2), gout)
    out_c, dx_c, dw_c, db_c = _forward_and_grads("cpp", x, wt, bt, (2, 2), gout)
    assert torch.equal(out_t, out_c) and torch.equal(dx_t, dx_c)
    assert_close(dw_c, dw_t, 1e-5, 1e-5, what="dw")
    assert_close(db_c, db_t, 1e-5, 1e-5, what="db")


@needs_cpp
def test_gradcheck_fp64():
    x = _input(2, 3, 5, 6, "channels_last", torch.float64)
    wt, bt = _params(3, 3, 5, True, torch.float64)
    assert torch.autograd.gradcheck(lambda *t: depthwise_conv2d(*t, (1, 2), impl="cpp"), (x, wt, bt))


@needs_cpp
def test_weight_gradient_keeps_the_weight_layout():
    """Channels-last weights (the models store them so) get channels-last gradients: DDP copies any other layout
    into its bucket at every step."""
    x = _input(2, 8, 6, 6, "channels_last")
    wt = torch.randn(8, 1, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    depthwise_conv2d(x, wt, None, (2, 2), impl="cpp").sum().backward()
    assert wt.grad.stride() == wt.stride()


@needs_cpp
def test_only_requested_gradients_are_computed():
    x = _input(1, 8, 6, 6, "channels_last").detach()
    wt, bt = _params(8, 5, 5, True)
    bt.requires_grad_(False)
    depthwise_conv2d(x, wt, bt, (2, 2), impl="cpp").sum().backward()
    assert x.grad is None and bt.grad is None and wt.grad is not None


def test_dispatch():
    x, w5, w3 = torch.randn(1, 4, 6, 6), torch.randn(4, 1, 5, 5), torch.randn(4, 1, 3, 3)
    built = cpp_impl.cpp_available()
    assert _resolve_impl("auto", x, w5) == ("cpp" if built else "torch")
    assert _resolve_impl("auto", x, w3) == "torch"  # oneDNN's 3 x 3 weight gradient is as fast
    assert _resolve_impl("auto", x.bfloat16(), w5) == "torch"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _resolve_impl("auto", x, w5) == "torch"
    with pytest.raises(ValueError, match="fp32 / fp64 CPU"):
        _resolve_impl("cpp", x.half(), w5)
    with pytest.raises(ValueError, match="impl must be one of"):
        _resolve_impl("fast", x, w5)
    with pytest.raises(ValueError, match=r"expected x \(B, C, H, W\), weight \(C, 1, kh, kw\)"):
        depthwise_conv2d(x, torch.randn(3, 1, 5, 5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_takes_the_torch_path(dtype):
    x = _input(1, 8, 6, 7, "channels_last").detach().to(dtype).requires_grad_()
    wt, bt = (t.detach().to(dtype).requires_grad_() for t in _params(8, 5, 5, True))
    out = depthwise_conv2d(x, wt, bt, (2, 2))
    ref = depthwise_conv2d_reference(x.double(), wt.double(), bt.double(), (2, 2))
    assert out.dtype == dtype
    assert_close(out, ref, 0.1, 2e-2, what=str(dtype))


@needs_cpp
def test_torch_compile_matches_eager():
    x = _input(2, 12, 7, 9, "channels_last")
    wt, bt = _params(12, 5, 5, True)
    fn = torch.compile(lambda *t: depthwise_conv2d(*t, (2, 2), impl="cpp").square().sum(), backend="aot_eager",
                       fullgraph=True)
    got = torch.autograd.grad(fn(x, wt, bt), (x, wt, bt))
    ref = torch.autograd.grad(depthwise_conv2d(x, wt, bt, (2, 2), impl="cpp").square().sum(), (x, wt, bt))
    for name, g, r in zip(("dx", "dw", "db"), got, ref):
        assert_close(g, r, 1e-5, 1e-5, what=name)


def test_jit_trace_sees_a_convolution():
    """FLOP counters trace the models: they must see the aten convolution, not the custom op."""
    x, w = torch.randn(1, 4, 6, 6), torch.randn(4, 1, 5, 5)
    graph = torch.jit.trace(lambda t: depthwise_conv2d(t, w, None, (2, 2)), x).graph
    kinds = {n.kind() for n in graph.nodes()}
    assert "aten::_convolution" in kinds and not any(k.startswith("depthwise_conv::") for k in kinds)


def test_module_is_a_drop_in_conv2d():
    from models._layers import DepthwiseConv2d

    torch.manual_seed(0)
    m = DepthwiseConv2d(6, 5, 1, 2)
    ref = nn.Conv2d(6, 6, 5, 1, 2, groups=6)
    ref.load_state_dict(m.state_dict())  # same keys and shapes
    x = torch.randn(2, 6, 9, 8)
    assert torch.equal(m(x), ref(x))
    for kwargs in (dict(stride=2, padding=2), dict(padding="same")):  # outside the op: nn.Conv2d's own forward
        m2 = DepthwiseConv2d(6, 5, **kwargs)
        r2 = nn.Conv2d(6, 6, 5, groups=6, **kwargs)
        r2.load_state_dict(m2.state_dict())
        assert torch.equal(m2(x), r2(x))


@needs_cpp
def test_without_gradients_the_custom_op_is_not_called():
    """Inference runs F.conv2d itself: the op would only add its dispatch cost."""
    from torch.profiler import ProfilerActivity, profile

    x, (w, b) = _input(1, 8, 6, 6, "channels_last"), _params(8, 5, 5, True)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx(), profile(activities=[ProfilerActivity.CPU]) as prof:
            out = depthwise_conv2d(x, w, b, (2, 2), impl="cpp")
        assert not any(e.key.startswith("depthwise_conv::") for e in prof.key_averages())
        assert torch.equal(out, F.conv2d(x, w, b, 1, 2, 1, 8))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        depthwise_conv2d(x, w, b, (2, 2), impl="cpp")
    assert any(e.key == "depthwise_conv::conv2d" for e in prof.key_averages())
