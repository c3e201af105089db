"""Generic timm-style checks for every model the package registers (family-specific checks — parameter
counts, official checkpoints, attention math — live in the per-family test files)."""
import pytest
import timm
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import models
from models._layers import activate, add_to_fresh

MODEL_NAMES = models.list_models()


def _input_size(name, extra_w=16):
    """A small, non-square input whose width is not a multiple of 32 (as in detection)."""
    cfg = timm.get_pretrained_cfg(name).to_dict()
    _, h, w = cfg.get("min_input_size") or (3, 64, 64)
    h, w = max(h, 64), max(w, 64)
    return h, w + extra_w


def _create(name, **kwargs):
    return timm.create_model(name, pretrained=False, **kwargs)


def test_models_are_registered_with_timm_on_import():
    assert set(MODEL_NAMES) <= set(timm.list_models())
    for family in models.FAMILIES:
        assert timm.list_models(module=family), f"family {family} registers no model"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_reaches_every_parameter(name):
    model = _create(name, num_classes=7)
    model.train()
    layouts = _record_conv_input_layouts(model)
    h, w = _input_size(name)
    out = model(torch.randn(2, 3, h, w))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:10]}"
    _assert_gradients_in_parameter_layout(model)
    # a channels-last weight on a contiguous input would make the conv convert the input at every call
    converting = sorted({n for n, weight_cl, input_cl in layouts if weight_cl and not input_cl})
    assert not converting, f"channels-last conv weights given contiguous inputs: {converting[:5]}"


def _is_channels_last(t):
    return t.stride() == t.to(memory_format=torch.channels_last).stride() != t.contiguous().stride()


def _record_conv_input_layouts(model):
    """(conv name, weight channels-last, input channels-last) of every conv call."""
    calls = []
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(lambda m, args, n=n: calls.append(
                (n, _is_channels_last(m.weight), args[0].is_contiguous(memory_format=torch.channels_last))))
    return calls


def _assert_gradients_in_parameter_layout(model):
    # DDP copies a gradient whose strides differ from its parameter's into the bucket at every step, and warns
    bad = [(n, p.stride(), p.grad.stride()) for n, p in model.named_parameters()
           if p.grad is not None and p.grad.stride() != p.stride()]
    assert not bad, f"gradients in another layout than their parameters (name, param, grad strides): {bad[:5]}"


@pytest.mark.parametrize("family", models.FAMILIES)
def test_channels_last_model_gets_gradients_in_parameter_layout(family):
    # the trainer's --channels-last: the model and its input converted (conv weights channels-last)
    name = timm.list_models(module=family)[0]
    model = models.to_channels_last(_create(name, num_classes=7))
    h, w = _input_size(name)
    model(torch.randn(2, 3, h, w).contiguous(memory_format=torch.channels_last)).square().mean().backward()
    _assert_gradients_in_parameter_layout(model)


class _AtenOps(TorchDispatchMode):
    """Records the names of the aten ops dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


IN_PLACE_ACTIVATIONS = {"gelu_", "hardswish_", "silu_", "relu_"}


@pytest.mark.parametrize("channels_last", [False, True], ids=["default", "channels_last"])
@pytest.mark.parametrize("family", models.FAMILIES)
def test_inference_computes_activations_in_place_with_identical_outputs(family, channels_last):
    # models._layers.activate / add_to_fresh: without a gradient the activations and inner residual adds write
    # into a layer's fresh output. Logits and every stage's features must equal, bit for bit, those of the
    # forward that records a graph (where nothing is in place), and no stage output may be overwritten later.
    # Channels-last (the trainer's --channels-last) is where the block residual sums of MPViT and Spatial-Mamba
    # go in place too: their token streams are channels-first in memory otherwise (PPMA/RMT's is (B, H, W, C)
    # in both layouts).
    name = timm.list_models(module=family)[0]
    h, w = _input_size(name)
    x = torch.randn(2, 3, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for kwargs in (dict(num_classes=7), dict(features_only=True, out_indices=(0, 1, 2, 3))):
        model = _create(name, **kwargs).eval()
        if channels_last:
            model = models.to_channels_last(model)
        recorded = model(x)
        with torch.no_grad(), _AtenOps() as ops:
            plain = model(x)
        with torch.inference_mode():
            inference = model(x)
        for a, b, c in zip(*(t if isinstance(t, list) else [t] for t in (recorded, plain, inference))):
            assert a.requires_grad and torch.equal(a, b) and torch.equal(a, c)
        assert ops.names & IN_PLACE_ACTIVATIONS, f"{name}: no activation ran in place under no_grad"
    with _AtenOps() as ops:
        model(x)
    assert not ops.names & IN_PLACE_ACTIVATIONS, "an activation ran in place while recording a graph"


@pytest.mark.parametrize("act", [nn.GELU(), nn.GELU(approximate="tanh"), nn.Hardswish(), nn.SiLU(), nn.ReLU()])
def test_activate_works_in_place_only_without_a_graph(act):
    x = torch.randn(64, 33)
    fresh = x.clone()
    out = activate(act, fresh)
    assert out is fresh and torch.equal(out, act(x))
    # recording a graph: the input stays (the activation's backward needs it), the gradient is act's
    w = x.clone().requires_grad_()
    branch = w * 1.0
    out = activate(act, branch)
    assert out is not branch and torch.equal(branch, x)
    (grad,) = torch.autograd.grad(out.sum(), w)
    w2 = x.clone().requires_grad_()
    assert torch.equal(grad, torch.autograd.grad(act(w2).sum(), w2)[0])
    # a jit trace (fvcore's FLOP counts) keeps the out-of-place op of the official graph
    kinds = {n.kind() for n in torch.jit.trace(lambda t: activate(act, t * 1.0), x).graph.nodes()}
    assert not kinds & {f"aten::{name}" for name in IN_PLACE_ACTIVATIONS}, kinds


def test_activate_leaves_activations_without_an_in_place_form_alone():
    x = torch.randn(8, 5)
    fresh = x.clone()
    assert torch.equal(activate(nn.Tanh(), fresh), torch.tanh(x)) and torch.equal(fresh, x)


def test_add_to_fresh_writes_into_the_branch_only_when_the_sum_fits_it():
    x = torch.randn(4, 8)
    branch = torch.randn(4, 8)
    expected = x + branch
    out = add_to_fresh(branch, x)
    assert out is branch and torch.equal(out, expected)
    # otherwise a new tensor, the branch untouched: x + branch in dtype, shape and layout
    for other_branch in (torch.randn(4, 8).bfloat16(),  # bf16 (autocast) + fp32 sums to fp32
                         torch.randn(1, 8),  # a branch smaller than the sum (broadcast)
                         torch.randn(8, 4).t()):  # another layout (the sum takes x's)
        before = other_branch.clone()
        out = add_to_fresh(other_branch, x)
        ref = x + before
        assert out is not other_branch and torch.equal(other_branch, before)
        assert torch.equal(out, ref) and out.dtype == ref.dtype and out.stride() == ref.stride()
    # recording a graph: a new tensor and the usual gradient
    w = torch.randn(4, 8, requires_grad=True)
    branch = w * 2.0
    out = add_to_fresh(branch, x)
    assert out is not branch
    out.sum().backward()
    assert torch.equal(w.grad, torch.full((4, 8), 2.0))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_classifier_reset_and_pre_logits(name):
    model = _create(name, num_classes=0).eval()
    h, w = _input_size(name)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        feats = model(x)
        assert feats.shape == (1, model.num_features)
        model.reset_classifier(5)
        assert model(x).shape == (1, 5)
        assert torch.allclose(model.forward_head(model.forward_features(x), pre_logits=True), feats, atol=1e-5)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.out_features == 5
    # every family re-initialises the new head as its own init does: trunc-normal(0.02) weights, zero bias
    assert torch.count_nonzero(head.bias) == 0 and 0.015 < head.weight.std().item() < 0.025
    with pytest.raises(ValueError, match="global_pool must be one of"):
        model.reset_classifier(5, global_pool="max")


@pytest.mark.parametrize("family", models.FAMILIES)
def test_load_pretrained_takes_a_checkpoint_key(family):
    import inspect

    model_cls = type(_create(models.list_models(f"{family}*")[0], num_classes=0))
    assert "checkpoint_key" in inspect.signature(model_cls.load_pretrained).parameters


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_features_only_gives_four_nchw_stages(name):
    model = _create(name, features_only=True, out_indices=(0, 1, 2, 3)).eval()
    h, w = _input_size(name)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, h, w))
    assert len(feats) == 4
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    for f, c, r in zip(feats, channels, reductions):
        assert f.ndim == 4 and f.shape[:2] == (1, c)
        # each stage is its stride's downsampling of the input, up to the rounding of odd sizes
        assert abs(f.shape[2] - h / r) < 1 and abs(f.shape[3] - w / r) < 1, (f.shape, h, w, r)
        assert torch.isfinite(f).all()
    assert reductions == sorted(reductions)
    sub = _create(name, features_only=True, out_indices=(1, 3)).eval()
    assert sub.feature_info.channels() == [channels[1], channels[3]]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_drop_path_rate_is_honoured(name):
    def rates(model):
        return [m.drop_prob for m in model.modules() if hasattr(m, "drop_prob")]

    assert max(rates(_create(name, drop_path_rate=0.0)), default=0.0) == 0.0
    r = rates(_create(name, drop_path_rate=0.25))
    assert r, "no DropPath modules"
    assert max(r) == pytest.approx(0.25) and min(r) >= 0.0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_grad_checkpointing_recomputes_and_keeps_gradients(name):
    h, w = _input_size(name)
    x = torch.randn(2, 3, h, w)
    model = _create(name, num_classes=3, drop_path_rate=0.0, drop_rate=0.0)
    model.train()

    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules() if not list(m.children())]

    def grads(checkpointing):
        model.zero_grad()
        model.set_grad_checkpointing(checkpointing)
        calls.clear()
        model(x).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    ref, plain_calls = grads(False)
    got, ckpt_calls = grads(True)
    for hook in hooks:
        hook.remove()
    assert ckpt_calls > plain_calls, "set_grad_checkpointing(True) recomputed nothing in backward"
    assert ref.keys() == got.keys()
    for n in ref:
        err = (ref[n] - got[n]).abs().max().item()
        assert err <= 1e-5 * (1 + ref[n].abs().max().item()), f"{n}: max abs err {err:.3e}"


def _bytes_left_allocated(fn):
    """Runs ``fn`` and returns (its result, the bytes PyTorch's CPU allocator holds afterwards above what it held
    before: what the forward left alive for the backward)."""
    from benchmarks.memory import allocator_events

    out, events = allocator_events(fn)
    return out, sum(events)


@pytest.mark.parametrize("name", [f"{family}_tiny" for family in models.FAMILIES] + ["rmt_tiny"])
def test_selective_grad_checkpointing_is_bit_exact_and_keeps_less(name):
    """``set_grad_checkpointing('selective')`` recomputes the cheap ops of each block: logits and every gradient
    the same bit for bit (stochastic depth on: the recompute replays its random draws), far fewer bytes kept."""
    x = torch.randn(2, 3, 128, 160)
    model = _create(name, num_classes=5, drop_path_rate=0.1).train()

    def run(mode):
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(mode)
        torch.manual_seed(3)
        out, kept = _bytes_left_allocated(lambda: model(x))
        out.square().mean().backward()
        return out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, kept

    ref, ref_grads, ref_kept = run(False)
    out, grads, kept = run("selective")
    assert torch.equal(out, ref)
    assert grads.keys() == ref_grads.keys()
    assert all(torch.equal(grads[n], ref_grads[n]) for n in ref_grads), [
        n for n in ref_grads if not torch.equal(grads[n], ref_grads[n])]
    # measured 0.39 (P2T) to 0.67 (MPViT) of the bytes kept without checkpointing
    assert kept < 0.75 * ref_kept, f"selective kept {kept / 2**20:.1f} MiB of {ref_kept / 2**20:.1f}"


class _RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append((func, args))
        return func(*args, **(kwargs or {}))


def test_selective_checkpointing_recomputes_only_cheap_ops_and_updates_batch_norm_statistics_once():
    from kernels.depthwise_conv import cpp_impl
    from models._layers import DepthwiseConv2d, run_block

    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.GELU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), DepthwiseConv2d(8, 5, 1, 2), nn.LayerNorm(10))
    plain = [p.clone() for p in [*block.parameters(), *block.buffers()]]
    x = torch.randn(2, 4, 6, 10, requires_grad=True)
    out = run_block(block, x, checkpointed="selective")
    with _RecordOps() as rec:
        out.sum().backward()
    forward_ops = [(f, a) for f, a in rec.ops if "backward" not in f.name()]
    names = {f.name() for f, _ in forward_ops}
    assert {"aten::gelu", "aten::native_layer_norm"} <= names  # recomputed
    assert not any("batch_norm" in n for n in names)  # saved: its running statistics are updated once
    convs = [a for f, a in forward_ops if f is torch.ops.aten.convolution.default]
    assert [a[8] for a in convs] == [8], "only the depthwise conv is recomputed, the dense one is saved"
    if cpp_impl.cpp_available():  # the 5 x 5 DepthwiseConv2d runs as the project's op: recomputed as well
        assert "depthwise_conv::conv2d" in names
    stats = [block[1].running_mean.clone(), block[1].running_var.clone()]
    grads = [x.grad.clone(), *[p.grad.clone() for p in block.parameters()]]

    for p, v in zip([*block.parameters(), *block.buffers()], plain):  # the same step without checkpointing
        p.data.copy_(v)
        p.grad = None
    x.grad = None
    block(x).sum().backward()
    assert all(torch.equal(g, r) for g, r in zip(grads, [x.grad, *[p.grad for p in block.parameters()]]))
    assert torch.equal(stats[0], block[1].running_mean) and torch.equal(stats[1], block[1].running_var)


@pytest.mark.parametrize("enable", [1, "full", None])
def test_set_grad_checkpointing_rejects_unknown_modes(enable):
    model = _create("rmt_tiny")
    with pytest.raises(ValueError, match="enable must be one of .*'selective'.*got"):
        model.set_grad_checkpointing(enable)


@pytest.mark.parametrize("family", models.FAMILIES)
def test_features_only_model_takes_set_grad_checkpointing(family):
    """timm's features_only wrapper has no ``set_grad_checkpointing``; ours passes it to the wrapped model."""
    name = f"{family}_tiny"
    model = _create(name, features_only=True, drop_path_rate=0.0).train()
    x = torch.randn(1, 3, *_input_size(name))

    def grads(mode):
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(mode)
        sum(f.square().mean() for f in model(x)).backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    ref = grads(False)
    got = grads("selective")
    assert {m.grad_checkpointing for m in model.modules() if hasattr(m, "grad_checkpointing")} == {"selective"}
    assert ref.keys() == got.keys() and all(torch.equal(ref[n], got[n]) for n in ref)
