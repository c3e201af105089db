"""Structure-aware state fusion: folded 11x11 form == dilated training form == per-pixel clamped-index
reference (borders included, non-square and tiny grids), gradients of both forms, the op's fvcore handle."""
import pytest
import torch
import torch.nn.functional as F

from kernels.state_fusion import (OP_NAME, fold_kernel, state_fusion, state_fusion_dilated, state_fusion_flop_jit,
                                  state_fusion_folded, state_fusion_matrix, state_fusion_ref)
from helpers import assert_close

SIZES = [(1, 1), (2, 3), (5, 9), (13, 6), (11, 17)]


def _inputs(C=3, H=5, W=9, b=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, C, H, W, generator=g, dtype=dtype)
    ks = [torch.randn(C, 1, 3, 3, generator=g, dtype=dtype) for _ in range(3)]
    alpha = torch.randn(3, generator=g, dtype=dtype)
    return h, *ks, alpha


@pytest.mark.parametrize("H,W", SIZES)
def test_folded_equals_dilated_equals_per_pixel_reference(H, W):
    args = _inputs(H=H, W=W)
    ref = state_fusion_ref(*args)
    assert_close(state_fusion_dilated(*args), ref, 1e-12, what="dilated")
    assert_close(state_fusion_folded(*args), ref, 1e-12, what="folded")
    assert_close(state_fusion_matrix(*args), ref, 1e-12, what="matrix")
    for folded in (False, True):
        for impl in ("torch", "matrix", "auto"):
            assert_close(state_fusion(*args, folded=folded, impl=impl), ref, 1e-12, what=f"op folded={folded} {impl}")


def test_zero_padding_would_not_be_exact_at_the_borders():
    # the replicate padding is what makes the fold exact; zero padding breaks it at the borders only
    h, k1, k3, k5, alpha = _inputs(H=12, W=12)
    w = fold_kernel(k1, k3, k5, alpha)
    zero = F.conv2d(h, w, padding=5, groups=h.shape[1])
    exact = state_fusion_dilated(h, k1, k3, k5, alpha)
    assert (zero - exact)[..., 5:-5, 5:-5].abs().max() < 1e-12
    assert (zero - exact).abs().max() > 1e-3


def test_fold_kernel_layout():
    C = 2
    k1, k3, k5 = (torch.full((C, 1, 3, 3), float(v), dtype=torch.float64) for v in (1, 10, 100))
    alpha = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    w = fold_kernel(k1, k3, k5, alpha)
    assert w.shape == (C, 1, 11, 11)
    assert int((w != 0).sum()) == C * 25
    assert w[0, 0, 5, 5] == 1 + 20 + 300  # the three centre taps add up
    assert w[0, 0, 4, 6] == 1 and w[0, 0, 2, 8] == 20 and w[0, 0, 10, 0] == 300 and w[0, 0, 5, 0] == 300


@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("impl", ["torch", "matrix", "reference"])
def test_gradcheck_fp64(folded, impl):
    args = [t.requires_grad_() for t in _inputs(C=1, H=3, W=4, b=1)]
    assert torch.autograd.gradcheck(lambda *x: state_fusion(*x, folded=folded, impl=impl), args,
                                    fast_mode=impl == "reference")


@pytest.mark.parametrize("H,W", [(1, 1), (2, 3), (7, 13), (14, 9)])
@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("impl", ["torch", "matrix"])
def test_op_gradients_match_autograd_of_plain_forms(H, W, folded, impl):
    args = _inputs(C=4, H=H, W=W, dtype=torch.float32)
    g = torch.randn(2, 4, H, W)
    leaves = [t.clone().requires_grad_() for t in args]
    (state_fusion(*leaves, folded=folded, impl=impl) * g).sum().backward()
    ref = [t.clone().requires_grad_() for t in args]
    (state_fusion_ref(*ref) * g).sum().backward()
    for name, a, r in zip(("h", "k1", "k3", "k5", "alpha"), leaves, ref):
        tol = 1e-4 * (1 + r.grad.abs().max())
        assert_close(a.grad, r.grad, tol, what=f"d{name} folded={folded} {impl}")


@pytest.mark.parametrize("H,W", [(1, 2), (4, 4), (11, 7), (15, 10)])
@pytest.mark.parametrize("dil", [1, 3, 5])
def test_phase_split_weight_gradient_equals_the_dilated_one(H, W, dil):
    # the backward's 3x3 depthwise weight gradient, undilated over the dil x dil phases of the grid
    from torch.nn.grad import conv2d_weight

    from kernels.state_fusion.naive import _depthwise_weight_grad
    gen = torch.Generator().manual_seed(H * W + dil)
    hp = torch.randn(2, 3, H + 2 * dil, W + 2 * dil, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 3, H, W, generator=gen, dtype=torch.float64)
    ref = conv2d_weight(hp, (3, 1, 3, 3), g, dilation=dil, groups=3)
    assert_close(_depthwise_weight_grad(hp, g, dil), ref, 1e-12, what=f"dK dil={dil}")


def test_fp32_forms_agree_and_fp16_is_finite():
    args = _inputs(C=8, H=14, W=14, dtype=torch.float32)
    a, b = state_fusion(*args, folded=False), state_fusion(*args, folded=True)
    assert_close(a, b, 1e-5 * (1 + a.abs().max()), what="folded vs dilated fp32")
    half = [t.half() for t in args]
    out = state_fusion_dilated(*[t.float() for t in half])
    assert torch.isfinite(out).all()
    for impl in ("torch", "matrix"):  # low-precision states through the op, forward and backward
        for dt in (torch.bfloat16, torch.float16):
            h = args[0][..., :6, :7].to(dt).requires_grad_()
            out = state_fusion(h, *args[1:], impl=impl)
            out.float().square().sum().backward()
            assert out.dtype == dt and torch.isfinite(out).all() and torch.isfinite(h.grad).all(), (impl, dt)


def test_errors():
    h, k1, k3, k5, alpha = _inputs()
    with pytest.raises(ValueError, match="k3 must be"):
        state_fusion(h, k1, k3[:, :, :2], k5, alpha)
    with pytest.raises(ValueError, match=r"impl must be one of \('reference', 'torch', 'matrix', 'auto'\), got 'triton'"):
        state_fusion(h, k1, k3, k5, alpha, impl="triton")


def test_fvcore_flop_handle_counts_three_3x3_convs():
    from fvcore.nn import FlopCountAnalysis

    class M(torch.nn.Module):
        def forward(self, *x):
            return state_fusion(*x)

    fca = FlopCountAnalysis(M(), _inputs(C=3, H=5, W=9, b=2, dtype=torch.float32))
    fca.set_op_handle(OP_NAME, state_fusion_flop_jit)
    fca.unsupported_ops_warnings(False)
    assert fca.total() == 27 * 2 * 3 * 5 * 9
