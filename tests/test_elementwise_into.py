"""kernels.elementwise_into: an elementwise op written into an existing tensor, piece by piece on the CPU."""
import pytest
import torch

import kernels.elementwise_into as ei


@pytest.mark.parametrize("numel,piece_bytes", [(1, 4), (37, 8), (37, 1 << 20), (1000, 12)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hardswish_backward_in_place_equals_the_op(numel, piece_bytes, dtype, monkeypatch):
    monkeypatch.setattr(ei, "CPU_PIECE_BYTES", piece_bytes)
    g = torch.Generator().manual_seed(numel)
    grad = torch.randn(numel, generator=g).to(dtype)
    # around hardswish's kinks at -3 and 3, and the kinks themselves
    x = torch.cat([torch.tensor([-3., 3.]), 8 * torch.rand(numel, generator=g) - 4])[:numel].to(dtype)
    expected = torch.ops.aten.hardswish_backward(grad, x)
    out = ei.hardswish_backward_(grad, x)
    assert out is grad and torch.equal(grad, expected)


def test_into_keeps_shape_and_evaluates_every_element_once(monkeypatch):
    monkeypatch.setattr(ei, "CPU_PIECE_BYTES", 20)  # 5 fp32 elements: 24 in pieces of 5, 5, 5, 5, 4
    out = torch.zeros(2, 3, 4)
    calls = []
    ei.into(out, lambda o, a: calls.append(o.numel()) or o + a, torch.arange(24.).view(2, 3, 4))
    assert torch.equal(out, torch.arange(24.).view(2, 3, 4)) and calls == [5, 5, 5, 5, 4]


def test_into_rejects_layouts_it_cannot_slice():
    out = torch.zeros(4, 6)
    with pytest.raises(ValueError, match=r"elementwise_into.into: every tensor must be contiguous.*\(6, 4\)"):
        ei.into(out.t(), torch.add, torch.zeros(6, 4))
    with pytest.raises(ValueError, match="with out's shape"):
        ei.into(out, torch.add, torch.zeros(24))
