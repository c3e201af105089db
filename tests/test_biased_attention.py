"""kernels.biased_attention: the same function as SDPA with a float mask; on CPU SDPA's fused kernel where it
applies, never its guard passes."""
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from kernels.biased_attention import biased_attention


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, 14, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = (-torch.rand(3, 14, 14, generator=g, dtype=torch.float64) * 4).requires_grad_()
    return q, k, v, bias


def test_equals_sdpa_forward_and_every_gradient():
    q, k, v, bias = _inputs()
    gout = torch.randn(2, 3, 14, 8, dtype=torch.float64)
    got = biased_attention(q, k, v, bias, scale=0.7)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.7)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, (q, k, v, bias), gout), torch.autograd.grad(want, (q, k, v, bias), gout)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_cpu_path_has_no_fully_masked_row_guard():
    """SDPA's CPU math path scans the scores for rows that are all -inf (isneginf / all / where); a finite
    decay mask never has one, and the scan cost ~5 % of an RMT-T training step."""
    q, k, v, bias = (t.detach().float() for t in _inputs(1))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        biased_attention(q, k, v, bias)
    names = {e.key for e in prof.key_averages()}
    assert not names & {"aten::isneginf", "aten::all", "aten::_safe_softmax"}, names
    assert "aten::_softmax" in names


def test_cpu_full_attention_runs_sdpa_flash_kernel():
    """RMT's full attention (4-D, bias without gradient) takes SDPA's fused CPU kernel: equal to the explicit ops
    (forward, q / k / v gradients) in fp64, and no N x N softmax is formed."""
    q, k, v, bias = _inputs(2)
    bias = bias.detach()[None]  # (1, n, N, N)
    gout = torch.randn(2, 3, 14, 8, dtype=torch.float64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = biased_attention(q, k, v, bias, scale=0.7)
        grads = torch.autograd.grad(got, (q, k, v), gout)
    names = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names and "aten::_softmax" not in names, names
    want = torch.softmax(q @ k.transpose(-1, -2) * 0.7 + bias, -1) @ v
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(grads, torch.autograd.grad(want, (q, k, v), gout)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
