"""P2T-specific tests: exact sizes, official checkpoint layout, pooling-attention math, input checks.

Generic behaviour (forward/backward, features_only shapes, reset_classifier, drop_path_rate honoured,
grad checkpointing) is covered for every registered model by tests/test_models.py.
"""
import argparse
import re

import pytest
import torch

import timm
from models import p2t
from models._checkpoint import CheckpointMismatchError
from helpers import assert_close, randomize

NAMES = ["p2t_base", "p2t_large", "p2t_small", "p2t_tiny"]

# Official numbers (spec §1.2 / §1.3; identical to the official p2t.py counted on CPU).
PARAMS = {"p2t_tiny": 11_590_840, "p2t_small": 24_079_848, "p2t_base": 36_066_408, "p2t_large": 54_477_096}
NUM_KEYS = {"p2t_tiny": 284, "p2t_small": 338, "p2t_base": 554, "p2t_large": 788}
EMBED_DIMS = {
    "p2t_tiny": (48, 96, 240, 384), "p2t_small": (64, 128, 320, 512),
    "p2t_base": (64, 128, 320, 512), "p2t_large": (64, 128, 320, 640),
}
DROP_PATH = {"p2t_tiny": 0.1, "p2t_small": 0.1, "p2t_base": 0.3, "p2t_large": 0.3}
MIN_SIDE = 65


def _meta_model(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


# A narrow, shallow P2T (same code and key layout; depth 2 in stages 1 and 3) keeps the tests cheap.
SMALL = dict(embed_dims=(8, 16, 24, 32), depths=(2, 1, 2, 1), num_heads=(1, 2, 3, 4), mlp_ratios=(2, 2, 2, 2))


def _small_model(**kwargs):
    return timm.create_model("p2t_tiny", **dict(SMALL, **kwargs)).eval()


def _load(path, **kwargs):
    """timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=path)) on the small config."""
    overlay = dict(file=str(path), **kwargs.pop("overlay", {}))
    return timm.create_model("p2t_tiny", pretrained=True, pretrained_cfg_overlay=overlay, **dict(SMALL, **kwargs))


# ------------------------------------------------------------------------------------------------
# Registry, sizes, configs
# ------------------------------------------------------------------------------------------------
def test_registered_names():
    assert sorted(timm.list_models(module="p2t")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_exact_parameter_count_and_defaults(name):
    model = _meta_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS[name], f"{name}: {n} parameters, official {PARAMS[name]}"
    assert len(model.state_dict()) == NUM_KEYS[name]
    assert not list(model.buffers())
    # official per-variant stochastic depth (linear up to the last block)
    assert model.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(DROP_PATH[name])
    assert model.num_classes == 1000 and model.get_classifier().out_features == 1000


@pytest.mark.parametrize("name", NAMES)
def test_feature_channels(name):
    model = _meta_model(name)
    assert [f["num_chs"] for f in model.feature_info] == list(EMBED_DIMS[name])
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    feats = _meta_model(name, features_only=True)
    assert feats.feature_info.channels() == list(EMBED_DIMS[name])
    assert feats.feature_info.reduction() == [4, 8, 16, 32]


def test_default_cfg_is_the_official_eval_recipe():
    for name in NAMES:
        cfg = timm.get_pretrained_cfg(name).to_dict()
        assert cfg["custom_load"] is True and not cfg.get("url") and not cfg.get("hf_hub_id")
        assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875  # resize 256, crop 224
        assert cfg["interpolation"] == "bicubic" and cfg["classifier"] == "head"
        assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
        assert cfg["first_conv"] == "stages.0.patch_embed.proj" and cfg["min_input_size"] == (3, MIN_SIDE, MIN_SIDE)


# ------------------------------------------------------------------------------------------------
# Official checkpoint layout
# ------------------------------------------------------------------------------------------------
def to_official(sd):
    """Our keys -> the official p2t.py keys (written independently of models.p2t's filter)."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"stages\.(\d)\.(patch_embed|pool_convs|blocks)\.(.*)", k)
        if m:
            s, part, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
            if part == "patch_embed":
                k = f"patch_embed{s}.{rest}"
            elif part == "pool_convs":
                k = f"d_convs{s}.{rest}"
            else:
                rest = re.sub(r"^(\d+)\.attn\.(q|kv)\.", r"\1.attn.\2.0.", rest)
                k = f"block{s}.{rest}"
        out[k] = v
    return out


def _perturbed_small():
    return randomize(_small_model(), scale=0.02)


@pytest.fixture(scope="module")
def small_official(tmp_path_factory):
    torch.manual_seed(0)
    model = _perturbed_small()
    official = to_official(model.state_dict())
    d = tmp_path_factory.mktemp("p2t_ckpt")
    files = {
        # checkpoint.pth as official main.py writes it
        "checkpoint": d / "checkpoint.pth",
        # best_model.pth: a bare state dict
        "bare": d / "best_model.pth",
        # DataParallel / DDP prefix
        "ddp": d / "ddp.pth",
    }
    torch.save({"model": official, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {},
                "epoch": 299, "scaler": {"scale": 65536.0}, "args": argparse.Namespace(model="p2t_tiny")},
               files["checkpoint"])
    torch.save(official, files["bare"])
    torch.save({"model": {"module." + k: v for k, v in official.items()}}, files["ddp"])
    return model, official, files


def test_official_key_layout_matches_spec():
    official = to_official(_meta_model("p2t_tiny").state_dict())
    assert len(official) == NUM_KEYS["p2t_tiny"]
    expected = {
        "patch_embed1.proj.weight": (48, 3, 7, 7), "patch_embed2.proj.weight": (96, 48, 3, 3),
        "patch_embed4.norm.bias": (384,),
        "d_convs1.0.weight": (48, 1, 3, 3), "d_convs1.3.bias": (48,), "d_convs4.3.weight": (384, 1, 3, 3),
        "block1.0.norm1.weight": (48,), "block1.0.attn.q.0.weight": (48, 48), "block1.0.attn.q.0.bias": (48,),
        "block1.1.attn.kv.0.weight": (96, 48), "block1.1.attn.proj.weight": (48, 48),
        "block1.1.attn.norm.weight": (48,), "block1.0.mlp.fc1.weight": (384, 48, 1, 1),
        "block1.0.mlp.conv.weight": (384, 1, 3, 3), "block1.0.mlp.fc2.weight": (48, 384, 1, 1),
        "block3.5.norm2.bias": (240,), "block4.2.mlp.fc1.weight": (1536, 384, 1, 1),
        "head.weight": (1000, 384), "head.bias": (1000,),
    }
    for k, shape in expected.items():
        assert tuple(official[k].shape) == shape, k
    assert {k.split(".")[0] for k in official} == {
        *(f"patch_embed{i}" for i in range(1, 5)), *(f"d_convs{i}" for i in range(1, 5)),
        *(f"block{i}" for i in range(1, 5)), "head"}


def test_official_checkpoint_round_trip(small_official):
    model, official, files = small_official
    assert "block1.1.attn.kv.0.weight" in official and "d_convs3.3.bias" in official
    x = torch.randn(1, 3, MIN_SIDE, 80)
    with torch.no_grad():
        ref = model(x)
    for which in ("checkpoint", "bare", "ddp"):
        loaded = _load(files[which]).eval()
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), f"{which}: {k}"
        with torch.no_grad():
            assert torch.equal(loaded(x), ref), which


def test_file_overlay_uses_our_loader(small_official, monkeypatch):
    """timm resets custom_load when pretrained_cfg_overlay gives a file; the builder keeps our loader."""
    _, _, files = small_official
    calls = []
    original = p2t.PyramidPoolingTransformer.load_pretrained
    monkeypatch.setattr(p2t.PyramidPoolingTransformer, "load_pretrained",
                        lambda self, path: (calls.append(path), original(self, path)))
    _load(files["checkpoint"])
    assert calls == [str(files["checkpoint"])]


def test_official_checkpoint_features_and_new_head(small_official):
    model, _, files = small_official
    f = files["checkpoint"]
    x = torch.randn(1, 3, 96, 96)
    feats = _load(f, features_only=True)
    with torch.no_grad():
        out = feats.eval()(x)
        ref = model.forward_intermediates(x, intermediates_only=True)
    assert [tuple(o.shape) for o in out] == [(1, 8, 24, 24), (1, 16, 12, 12), (1, 24, 6, 6), (1, 32, 3, 3)]
    for o, r in zip(out, ref):
        assert torch.equal(o, r)
    # classifier of another size (or none) is dropped, the rest is loaded
    m10 = _load(f, num_classes=10)
    assert m10.head.out_features == 10
    assert torch.equal(m10.stages[2].pool_convs[1].weight, model.stages[2].pool_convs[1].weight)
    m0 = _load(f, num_classes=0).eval()
    with torch.no_grad():
        assert torch.equal(m0(x), model.forward_head(model.forward_features(x), pre_logits=True))


def test_our_keys_load_unchanged(small_official, tmp_path):
    model, _, _ = small_official
    path = tmp_path / "ours.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = _load(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # the filter is idempotent on our own keys
    assert p2t.checkpoint_filter_fn(dict(model.state_dict()), model).keys() == model.state_dict().keys()


@pytest.mark.parametrize("custom_load", [None, False])  # our loader, and timm's generic loader path
def test_mismatching_checkpoint_fails_naming_keys(small_official, tmp_path, custom_load):
    _, official, _ = small_official
    overlay = {} if custom_load is None else dict(custom_load=custom_load)
    # timm's own strict load (custom_load=False) raises torch's RuntimeError, which names the keys too
    errors = CheckpointMismatchError if custom_load is None else RuntimeError

    renamed = dict(official)
    renamed["block3.1.attn.kv.0.wieght"] = renamed.pop("block3.1.attn.kv.0.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"model": renamed}, path)
    with pytest.raises(errors) as err:
        _load(path, overlay=overlay)
    assert "stages.2.blocks.1.attn.kv.weight" in str(err.value)  # missing
    assert "wieght" in str(err.value)  # unexpected

    wrong = dict(official)
    wrong["d_convs3.2.weight"] = torch.zeros(24, 1, 5, 5)
    path = tmp_path / "wrong_shape.pth"
    torch.save({"model": wrong}, path)
    with pytest.raises(errors, match=r"stages\.2\.pool_convs\.2\.weight"):
        _load(path, overlay=overlay)

    # a detection-style checkpoint (no head) does not silently leave a random classifier
    nohead = {k: v for k, v in official.items() if not k.startswith("head.")}
    path = tmp_path / "nohead.pth"
    torch.save(nohead, path)
    with pytest.raises(errors, match=r"head\.weight"):
        _load(path, overlay=overlay)
    _load(path, overlay=overlay, features_only=True)  # fine without the head


# ------------------------------------------------------------------------------------------------
# Block math against a dense formulation of the spec
# ------------------------------------------------------------------------------------------------
def _dense_adaptive_avg_pool(x, oh, ow):
    """x: (C, H, W). Bin i covers [floor(i*H/oh), ceil((i+1)*H/oh))."""
    C, H, W = x.shape
    out = torch.empty(C, oh, ow, dtype=x.dtype)
    for i in range(oh):
        h0, h1 = (i * H) // oh, -((-(i + 1) * H) // oh)
        for j in range(ow):
            w0, w1 = (j * W) // ow, -((-(j + 1) * W) // ow)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(dim=(1, 2))
    return out


def _dense_dwconv3x3(x, weight, bias):
    """x: (C, H, W), weight (C, 1, 3, 3), zero padding 1."""
    C, H, W = x.shape
    xp = torch.zeros(C, H + 2, W + 2, dtype=x.dtype)
    xp[:, 1:-1, 1:-1] = x
    out = bias[:, None, None].expand(C, H, W).clone()
    for di in range(3):
        for dj in range(3):
            out += weight[:, 0, di, dj][:, None, None] * xp[:, di:di + H, dj:dj + W]
    return out


def _dense_layer_norm(x, weight, bias, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def _dense_pooling_attention(x, attn, convs, expected_sizes):
    """x: (B, H, W, C) float64. Spec §1.1 PoolingAttention, one sample and one head at a time."""
    B, H, W, C = x.shape
    h = attn.num_heads
    d = C // h
    out = torch.empty(B, H * W, C, dtype=x.dtype)
    for b in range(B):
        tokens = x[b].reshape(H * W, C)
        img = tokens.t().reshape(C, H, W)
        pooled = []
        for (oh, ow), conv in zip(expected_sizes, convs):
            p = _dense_adaptive_avg_pool(img, oh, ow)
            p = p + _dense_dwconv3x3(p, conv.weight.double(), conv.bias.double())
            pooled.append(p.reshape(C, -1).t())
        pooled = torch.cat(pooled, 0)
        pooled = _dense_layer_norm(pooled, attn.norm.weight.double(), attn.norm.bias.double(), 1e-5)
        q = tokens @ attn.q.weight.double().t() + attn.q.bias.double()
        kv = pooled @ attn.kv.weight.double().t() + attn.kv.bias.double()
        k, v = kv[:, :C], kv[:, C:]  # k = first C channels
        heads = []
        for i in range(h):
            s = q[:, i * d:(i + 1) * d] @ k[:, i * d:(i + 1) * d].t() / d ** 0.5
            a = torch.exp(s - s.max(-1, keepdim=True).values)
            a = a / a.sum(-1, keepdim=True)
            heads.append(a @ v[:, i * d:(i + 1) * d])
        o = torch.cat(heads, -1)
        out[b] = o @ attn.proj.weight.double().t() + attn.proj.bias.double()
    return out.reshape(B, H, W, C)


# H=10, W=14 with ratios (1, 2, 3, 4): 10/4 = 2.5 -> 2 and 14/4 = 3.5 -> 4 (round half to even), 14/3 -> 5
CASES = [((1, 2, 3, 4), 10, 14, [(10, 14), (5, 7), (3, 5), (2, 4)]),
         ((3, 4, 5, 6), 7, 9, [(2, 3), (2, 2), (1, 2), (1, 2)])]


@pytest.mark.parametrize("ratios,H,W,sizes", CASES)
@pytest.mark.parametrize("path", ["sdpa", "explicit", "unfused"])
def test_pooling_attention_equals_dense_math(ratios, H, W, sizes, path, monkeypatch):
    """Every attention path: SDPA (taken on CPU from CPU_MIN_KEYS keys on), the explicit ops (fewer keys: P2T's
    54 pooled keys at 224^2 on CPU), and timm's fused_attn switched off."""
    import kernels.fused_attention
    from torch.profiler import profile

    assert p2t.pooled_sizes(H, W, ratios) == sizes
    C, heads = 12, 3
    attn = p2t.PoolingAttention(C, heads, ratios).eval()
    convs = torch.nn.ModuleList([torch.nn.Conv2d(C, C, 3, padding=1, groups=C) for _ in ratios])
    randomize(attn, seed=1, scale=0.3)
    randomize(convs, seed=2, scale=0.3)
    attn.fused_attn = path != "unfused"
    monkeypatch.setattr(kernels.fused_attention, "CPU_MIN_KEYS", 0 if path == "sdpa" else 10 ** 9)
    x = torch.randn(2, H, W, C)
    with torch.no_grad(), profile() as prof:
        y = attn(x, convs)
    ran_sdpa = any("scaled_dot_product" in e.key for e in prof.key_averages())
    assert ran_sdpa == (path == "sdpa"), [e.key for e in prof.key_averages()]
    ref = _dense_pooling_attention(x.double(), attn, convs, sizes)
    assert_close(y, ref, 1e-5, 1e-5, what=f"PoolingAttention {path} {ratios} {H}x{W}")


def test_block_equals_dense_math():
    """Full block: LN(eps 1e-6) -> pooling attention -> residual; LN -> IRB with Hardswish -> residual."""
    C, H, W, ratios = 8, 10, 14, (1, 2, 3, 4)
    blk = p2t.P2TBlock(C, 2, mlp_ratio=2, pool_ratios=ratios).eval()
    convs = torch.nn.ModuleList([torch.nn.Conv2d(C, C, 3, padding=1, groups=C) for _ in ratios])
    randomize(blk, seed=3, scale=0.3)
    randomize(convs, seed=4, scale=0.3)
    x = torch.randn(1, H, W, C)
    with torch.no_grad():
        y = blk(x, convs)

    def hswish(t):
        return t * torch.clamp(t + 3, 0, 6) / 6

    xd = x.double()
    n1 = _dense_layer_norm(xd, blk.norm1.weight.double(), blk.norm1.bias.double(), 1e-6)
    xd = xd + _dense_pooling_attention(n1, blk.attn, convs, p2t.pooled_sizes(H, W, ratios))
    n2 = _dense_layer_norm(xd, blk.norm2.weight.double(), blk.norm2.bias.double(), 1e-6)[0]  # (H, W, C)
    mlp = blk.mlp
    hid = hswish(n2 @ mlp.fc1.weight.double()[:, :, 0, 0].t() + mlp.fc1.bias.double())
    hid = hswish(_dense_dwconv3x3(hid.permute(2, 0, 1), mlp.conv.weight.double(), mlp.conv.bias.double()))
    ffn = hid.permute(1, 2, 0) @ mlp.fc2.weight.double()[:, :, 0, 0].t() + mlp.fc2.bias.double()
    assert_close(y, xd + ffn[None], 1e-5, 1e-5, what="P2TBlock")


# ------------------------------------------------------------------------------------------------
# The IRB's training path (_IRBFunction: fewer fresh tensors)
# ------------------------------------------------------------------------------------------------
def _irb_reference(x, irb):
    """The IRB as autograd differentiates PyTorch's own ops, on NCHW-contiguous tensors."""
    F = torch.nn.functional
    t = F.hardswish(F.conv2d(x.permute(0, 3, 1, 2).contiguous(), irb.fc1.weight.contiguous(), irb.fc1.bias))
    t = F.hardswish(F.conv2d(t, irb.conv.weight.contiguous(), irb.conv.bias, padding=1, groups=t.shape[1]))
    return F.conv2d(t, irb.fc2.weight.contiguous(), irb.fc2.bias).permute(0, 2, 3, 1)


def _irb_and_input(shape, hidden, dtype, seed=0):
    B, H, W, C = shape
    irb = randomize(p2t.IRB(C, hidden), seed=seed, scale=0.5).to(dtype).train()
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return irb, x


def _grads(fn, x, params, grad_out):
    x = x.detach().requires_grad_(x.requires_grad)
    out = fn(x)
    found = torch.autograd.grad(out, [t for t in (x, *params) if t.requires_grad], grad_out)
    it = iter(found)
    return out.detach(), [next(it) if t.requires_grad else None for t in (x, *params)]


# awkward shapes: a 1-row grid, odd sides, one image, hidden widths that are not multiples of 8
IRB_CASES = [((2, 7, 9, 8), 24), ((1, 5, 3, 6), 13), ((3, 1, 4, 4), 8)]


@pytest.mark.parametrize("shape,hidden", IRB_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("frozen", [(), ("x", "fc1.weight", "conv.bias"), ("fc2.weight", "fc2.bias", "conv.weight"),
                                    ("x", "fc1.weight", "fc1.bias")])
def test_irb_training_path_matches_autograd(shape, hidden, dtype, frozen, monkeypatch):
    """Output and every gradient of the training path against autograd on PyTorch's ops (fp64 to 1e-12: a
    gradcheck cannot run it, its backward runs once per graph). Pieces of 24 bytes make the elementwise
    gradients cross many piece boundaries."""
    import kernels.elementwise_into
    monkeypatch.setattr(kernels.elementwise_into, "CPU_PIECE_BYTES", 24)
    irb, x = _irb_and_input(shape, hidden, dtype)
    names = ["fc1.weight", "fc1.bias", "conv.weight", "conv.bias", "fc2.weight", "fc2.bias"]
    params = [irb.get_parameter(n) for n in names]
    for n, p in zip(names, params):
        p.requires_grad_(n not in frozen)
    x.requires_grad_("x" not in frozen)
    grad_out = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    assert irb._reuses_buffers(x)
    out, grads = _grads(irb, x, params, grad_out)
    ref_out, ref_grads = _grads(lambda t: _irb_reference(t, irb), x, params, grad_out)
    irb.buffer_reuse = False
    module_out, module_grads = _grads(irb, x, params, grad_out)
    assert torch.equal(out, module_out), "the forward is the module's, op for op"
    for n, g, r in zip(["x", *names], grads, module_grads):
        assert (g is None and r is None) or torch.equal(g, r), f"grad {n}: oneDNN's, as autograd takes them"
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert_close(out, ref_out, tol, tol, what="output")
    for n, g, r in zip(["x", *names], grads, ref_grads):
        assert (g is None) == (r is None), n
        if g is not None:
            assert_close(g, r, tol, tol, what=f"grad {n}")
            assert g.stride() == (x if n == "x" else irb.get_parameter(n)).stride(), f"grad {n} layout"


def test_irb_training_path_saves_one_hidden_tensor_less():
    """Exact saved bytes: x, the fc1 and conv outputs and the second activation, against autograd's x and four
    hidden-width tensors (the weights alike)."""
    shape, hidden = (2, 5, 7, 8), 24
    saved = {}
    for reuse in (False, True):
        irb, x = _irb_and_input(shape, hidden, torch.float32)
        irb.buffer_reuse = reuse
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.nbytes) or t, lambda t: t):
            irb(x)
        saved[reuse] = sum(sizes)
    weights = 4 * (hidden * 8 + hidden * 9 + 8 * hidden)
    assert saved[False] == 4 * 70 * 8 + 4 * (4 * 70 * hidden) + weights
    assert saved[True] == saved[False] - 4 * 70 * hidden


def test_irb_training_path_refuses_a_second_backward_naming_the_flag():
    irb, x = _irb_and_input((1, 4, 4, 4), 8, torch.float32)
    x.requires_grad_()
    out = irb(x).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"second backward \(retain_graph=True\).*ffn_buffer_reuse=False"):
        out.backward()
    with pytest.raises(RuntimeError, match=r"double backward \(create_graph=True\).*ffn_buffer_reuse=False"):
        torch.autograd.grad(irb(x).sum(), x, create_graph=True)
    # without it, and in eval mode, both work (autograd's own ops)
    for reuse, training in ((False, True), (True, False)):
        irb.buffer_reuse = reuse
        irb.train(training)
        out = irb(x).sum()
        out.backward(retain_graph=True)
        out.backward()
        g, = torch.autograd.grad(irb(x).sum(), x, create_graph=True)
        g.sum().backward()


def test_irb_training_path_only_where_it_applies():
    irb, x = _irb_and_input((1, 4, 4, 4), 8, torch.float32)
    assert irb._reuses_buffers(x)
    with torch.no_grad():
        assert not irb._reuses_buffers(x)
    with torch.autocast("cpu", torch.bfloat16):
        assert not irb._reuses_buffers(x)
    assert not irb.eval()._reuses_buffers(x)
    irb.train().requires_grad_(False)
    assert not irb._reuses_buffers(x)
    assert irb._reuses_buffers(x.requires_grad_())
    irb.act = torch.nn.GELU()
    assert not irb._reuses_buffers(x)


def test_irb_under_torch_func_grad_takes_the_module_ops():
    """torch.func.grad (meta-learning, per-sample gradients) differentiates what it sees: the module's ops."""
    from torch.func import functional_call, grad
    irb, x = _irb_and_input((2, 5, 6, 4), 8, torch.float64)
    params = dict(irb.named_parameters())
    found = grad(lambda p: functional_call(irb, p, (x,)).square().sum())(params)
    irb(x).square().sum().backward()
    for n, p in irb.named_parameters():
        assert_close(found[n], p.grad, 1e-12, 1e-12, what=n)


def test_model_trains_alike_with_and_without_buffer_reuse():
    """A whole model in training mode (drop path on, same seed): the logits and every gradient bit for bit;
    ``ffn_buffer_reuse`` reaches every IRB."""
    x = torch.randn(2, 3, 96, 96)
    results = []
    for reuse in (True, False):
        torch.manual_seed(0)
        model = timm.create_model("p2t_tiny", ffn_buffer_reuse=reuse, num_classes=5, **SMALL).train()
        assert all(m.buffer_reuse == reuse for m in model.modules() if isinstance(m, p2t.IRB))
        torch.manual_seed(1)
        out = model(x)
        out.square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (out, grads), (ref_out, ref_grads) = results
    assert torch.equal(out, ref_out)
    for n, g in grads.items():
        assert torch.equal(g, ref_grads[n]), n


def test_pool_convs_are_shared_per_stage():
    model = _small_model()
    stage = model.stages[2]
    keys = list(stage.state_dict())
    assert len(stage.blocks) == 2
    assert sum(k.startswith("pool_convs.") for k in keys) == 8  # 4 convs (weight, bias), none per block
    assert not any("conv" in k and "attn" in k for k in keys)
    # every block of the stage depends on the shared convs
    x = torch.randn(1, 3, 96, 96)
    captured = []
    for blk in stage.blocks:
        blk.register_forward_hook(lambda m, i, o: captured.append(o))
    model(x)
    for o in captured:
        g = torch.autograd.grad(o.sum(), stage.pool_convs[0].weight, retain_graph=True)[0]
        assert g.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------
def test_min_input_size_is_tight():
    assert p2t.min_input_size() == MIN_SIDE
    model = _small_model()
    assert model.min_input_size() == MIN_SIDE
    with torch.no_grad():
        assert model(torch.randn(1, 3, MIN_SIDE, MIN_SIDE)).shape == (1, 1000)
        for shape in [(64, 64), (64, 200), (200, 64), (32, 32)]:
            with pytest.raises(ValueError, match=r"too small.*>= 65 px"):
                model(torch.randn(1, 3, *shape))
            with pytest.raises(ValueError, match=r">= 65 px"):
                model.forward_intermediates(torch.randn(1, 3, *shape))


def test_pruned_model_accepts_smaller_inputs():
    model = _small_model()
    model.prune_intermediate_layers(indices=(0, 1))
    assert model.min_input_size() == 49  # stage 2 (ratio 12) needs ceil(H / 8) >= 7
    feats = model.forward_intermediates(torch.randn(1, 3, 49, 49), intermediates_only=True)
    assert [tuple(f.shape) for f in feats] == [(1, 8, 13, 13), (1, 16, 7, 7)]
    with pytest.raises(ValueError, match=">= 49 px"):
        model.forward_intermediates(torch.randn(1, 3, 48, 48))


def test_wrong_channels_and_rank():
    model = _small_model()
    with pytest.raises(ValueError, match=r"built for 3 input channels, got 1"):
        model(torch.randn(1, 1, 96, 96))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(3, 96, 96))
    gray = _small_model(in_chans=1)
    assert gray(torch.randn(1, 1, 96, 96)).shape == (1, 1000)


def test_attention_rejects_too_small_grid():
    attn = p2t.PoolingAttention(8, 2, (12, 16, 20, 24))
    convs = torch.nn.ModuleList([torch.nn.Conv2d(8, 8, 3, padding=1, groups=8) for _ in range(4)])
    with pytest.raises(ValueError, match=r"too small for pooling ratio 24.*at least 13"):
        attn(torch.randn(1, 12, 40, 8), convs)
