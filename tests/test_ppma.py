"""Family tests for models/ppma.py (PPMA and the RMT baselines)."""
import math
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import models.ppma as P
from models import to_channels_last
from models._checkpoint import CheckpointMismatchError
from helpers import assert_close, randomize

PARAMS = dict(ppma_tiny=14_335_272, ppma_small=26_969_472, ppma_base=54_158_524,
              rmt_tiny=14_334_216, rmt_small=26_967_240, rmt_base=54_154_896)
CHANNELS = dict(tiny=(64, 128, 256, 512), small=(64, 128, 256, 512), base=(80, 160, 320, 512))
SD_ENTRIES = dict(ppma_tiny=412, ppma_small=787, ppma_base=1253)

# official state_dict key patterns (spec §3.3)
OFFICIAL_KEY_PATTERNS = [
    r"patch_embed\.proj\.(0|3|6|9)\.(weight|bias)",
    r"patch_embed\.proj\.(1|4|7|10)\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    r"layers\.\d\.Relpos\.(angle|decay)",
    r"layers\.\d\.blocks\.\d+\.pos\.conv\.(weight|bias)",
    r"layers\.\d\.blocks\.\d+\.(retention_layer_norm|final_layer_norm)\.(weight|bias)",
    r"layers\.\d\.blocks\.\d+\.retention\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)",
    r"layers\.\d\.blocks\.\d+\.retention\.lepe\.conv\.(weight|bias)",
    r"layers\.\d\.blocks\.\d+\.retention\.path_embed\.(dt_bias|A_log|dt_linear\.weight)",
    r"layers\.\d\.blocks\.\d+\.ffn\.(fc1|fc2|dwconv\.conv)\.(weight|bias)",
    r"layers\.\d\.blocks\.\d+\.gamma_(1|2)",
    r"layers\.\d\.downsample\.reduction\.(weight|bias)",
    r"layers\.\d\.downsample\.norm\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    r"(proj|head)\.(weight|bias)",
    r"norm\.(weight|bias|running_mean|running_var|num_batches_tracked)",
]

TINY = dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 2, 1), num_heads=(1, 2, 3, 4), mlp_ratios=(2, 2, 2, 2),
            projection=32)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count_and_features(name):
    with torch.device("meta"):
        m = timm.create_model(name)
    n = sum(p.numel() for p in m.parameters())
    assert n == PARAMS[name], f"{name}: {n} != official {PARAMS[name]}"
    assert tuple(m.feature_info[i]["num_chs"] for i in range(4)) == CHANNELS[name.split("_")[1]]
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]
    keys = list(m.state_dict())
    if name in SD_ENTRIES:
        assert len(keys) == SD_ENTRIES[name]
    bad = [k for k in keys if not any(re.fullmatch(p, k) for p in OFFICIAL_KEY_PATTERNS)]
    assert not bad, f"keys outside the official layout: {bad[:5]}"


def test_registered_names_and_defaults():
    assert sorted(timm.list_models(module="ppma")) == sorted(PARAMS)
    with torch.device("meta"):
        for name, rate in (("ppma_tiny", 0.1), ("ppma_small", 0.15), ("ppma_base", 0.4), ("rmt_base", 0.4)):
            m = timm.create_model(name)
            probs = [mod.drop_prob for mod in m.modules() if hasattr(mod, "drop_prob")]
            assert math.isclose(max(probs), rate, rel_tol=1e-6)
        modes = [s.blocks[0].retention.mode for s in timm.create_model("ppma_tiny").layers]
        assert modes == ["criss_cross", "criss_cross", "full", "full"]
        modes = [s.blocks[0].retention.mode for s in timm.create_model("rmt_small").layers]
        assert modes == ["criss_cross", "criss_cross", "criss_cross", "full"]


@pytest.mark.parametrize("arch", ["ppma_tiny", "rmt_tiny"])
@pytest.mark.parametrize("container", ["model", "models", "model_ema", "state_dict"])
def test_official_checkpoint_round_trip(tmp_path, arch, container):
    src = randomize(timm.create_model(arch, **TINY), seed=1, skip=("angle", "decay")).eval()
    sd = {"module." + k if container == "model" else k: v for k, v in src.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({container: sd, "epoch": 3}, path)
    dst = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        a, b = src(x), dst(x)
    assert torch.equal(a, b), f"max abs err {(a - b).abs().max():.3e}"


def test_corrupted_checkpoint_fails_loudly(tmp_path):
    sd = timm.create_model("ppma_tiny", **TINY).state_dict()
    bad = dict(sd)
    bad["layers.0.blocks.0.retention.path_embed.A_logx"] = bad.pop("layers.0.blocks.0.retention.path_embed.A_log")
    torch.save({"model": bad}, tmp_path / "a.pth")
    with pytest.raises(CheckpointMismatchError, match=r"path_embed\.A_log"):
        timm.create_model("ppma_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "a.pth")),
                          **TINY)
    bad = dict(sd)
    bad["layers.1.blocks.0.ffn.fc1.weight"] = torch.zeros(3, 3)
    torch.save({"model": bad}, tmp_path / "b.pth")
    with pytest.raises(CheckpointMismatchError, match=r"layers\.1\.blocks\.0\.ffn\.fc1\.weight"):
        timm.create_model("ppma_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "b.pth")),
                          **TINY)
    # an RMT checkpoint (Relpos.decay, no path_embed) does not load into PPMA
    rmt = timm.create_model("rmt_tiny", **TINY).state_dict()
    torch.save({"model": rmt}, tmp_path / "c.pth")
    with pytest.raises(CheckpointMismatchError, match="path_embed"):
        timm.create_model("ppma_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "c.pth")),
                          **TINY)


def test_downstream_out_norms(tmp_path, caplog):
    cls = randomize(timm.create_model("ppma_tiny", **TINY), seed=1, skip=("angle", "decay")).eval()
    torch.save({"model": cls.state_dict()}, tmp_path / "cls.pth")
    # classification checkpoint -> backbone with output norms (left at identity init, like the official loader;
    # the loader says which weights kept their initialisation)
    with caplog.at_level("INFO", logger="models"):
        fb = timm.create_model("ppma_tiny", pretrained=True, features_only=True, out_norm=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "cls.pth")), **TINY).eval()
    kept = [f"outnorm{i}.{p}" for i in range(4) for p in ("bias", "weight")]
    assert any("8 weights of PPMAViT" in r.message and ", ".join(sorted(kept)) in r.message for r in caplog.records), \
        caplog.text
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = fb(x)
        _, raw = cls.forward_intermediates(x)
    for f, r in zip(feats, raw):
        want = F.layer_norm(r.permute(0, 2, 3, 1), r.shape[1:2]).permute(0, 3, 1, 2)
        assert torch.allclose(f, want, atol=1e-5), f"max abs err {(f - want).abs().max():.3e}"
    # official downstream backbone checkpoint: outnorm{i} keys, no proj/norm/head
    bb = {k: v for k, v in cls.state_dict().items() if not k.startswith(("proj.", "norm.", "head."))}
    for i, c in enumerate(TINY["embed_dims"]):
        bb[f"outnorm{i}.weight"] = torch.full((c,), 2.0)
        bb[f"outnorm{i}.bias"] = torch.full((c,), 0.5)
    torch.save({"model": bb}, tmp_path / "bb.pth")
    fb2 = timm.create_model("ppma_tiny", pretrained=True, features_only=True, out_norm=True,
                            pretrained_cfg_overlay=dict(file=str(tmp_path / "bb.pth")), **TINY).eval()
    with torch.no_grad():
        feats2 = fb2(x)
    for f, f2 in zip(feats, feats2):
        assert torch.allclose(2 * f + 0.5, f2, atol=1e-5)
    assert [f.shape[1] for f in feats2] == list(TINY["embed_dims"])
    assert [tuple(f.shape[2:]) for f in feats2] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    # ... but a backbone checkpoint into a classifier is a mismatch: no random head left behind silently
    with pytest.raises(CheckpointMismatchError, match=r"missing keys .*head\.weight"):
        timm.create_model("ppma_tiny", pretrained=True, out_norm=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "bb.pth")), **TINY)


def test_input_errors():
    m = timm.create_model("rmt_tiny", **TINY)
    with pytest.raises(ValueError, match="32"):
        m(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, 4, 64, 64))


def test_odd_input_sizes():
    m = timm.create_model("ppma_tiny", **TINY).eval()
    with torch.no_grad():
        for h, w in ((33, 47), (70, 45)):
            feats = m.forward_intermediates(torch.randn(1, 3, h, w), intermediates_only=True)
            sizes = [tuple(f.shape[2:]) for f in feats]
            want, hh, ww = [], h, w
            for i in range(4):
                hh, ww = (math.ceil(hh / 4), math.ceil(ww / 4)) if i == 0 else (math.ceil(hh / 2), math.ceil(ww / 2))
                want.append((hh, ww))
            assert sizes == want


@pytest.mark.parametrize("channels_last", [False, True])
def test_token_stream_is_contiguous_nhwc(channels_last):
    """Every block and LayerNorm gets the (B, H, W, C) stream contiguous in memory, in the default and the
    channels-last layout: a stream that is NCHW memory seen as NHWC (the official layout) makes each LayerNorm
    copy it and each depthwise conv reorder it. The NCHW stage outputs keep the model's layout."""
    m = timm.create_model("rmt_tiny", **TINY).eval()
    if channels_last:
        to_channels_last(m)
    seen = []
    for name, mod in m.named_modules():
        if isinstance(mod, (P.Block, torch.nn.LayerNorm)):
            mod.register_forward_pre_hook(lambda mod, args, name=name: seen.append((name, args[0].is_contiguous())))
    x = torch.randn(2, 3, 70, 45)
    with torch.no_grad():
        m(x)
        last, feats = m.forward_intermediates(x)
    assert len(seen) == 2 * 3 * sum(len(s.blocks) for s in m.layers)
    assert [name for name, contiguous in seen if not contiguous] == []
    # NCHW outputs in the model's layout: contiguous as the official backbone's (a neck or head rounds the same)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert all(f.is_contiguous(memory_format=fmt) for f in [*feats, last, m.forward_features(x)])


# ------------------------------------------------------------------ attention blocks vs dense formulas
def _rope(x, h, w):
    """Independent RoPE: pairs (x0, x1) rotated by angle p * theta_m, p = raster index."""
    d = x.shape[-1]
    theta = 1.0 / 10000 ** torch.linspace(0, 1, d // 2)
    pos = torch.arange(h * w, dtype=torch.float32).view(h, w, 1)
    ang = pos * theta  # (h, w, d/2)
    c, s = torch.cos(ang), torch.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1).flatten(-2)


def _axial_ops(aw, ah, h, w):
    """Row operator R and column operator C as dense (.., N, N) matrices from axial attention weights."""
    N = h * w
    R = torch.zeros(*aw.shape[:2], N, N)
    C = torch.zeros(*aw.shape[:2], N, N)
    for i in range(h):
        R[:, :, i * w:(i + 1) * w, i * w:(i + 1) * w] = aw[:, :, i]
    for j in range(w):
        C[:, :, j::w, j::w] = ah[:, :, j]
    return R, C


def _dense_block(attn, x, kind):
    b, h, w, c = x.shape
    n = attn.num_heads
    d = c // n
    q = x @ attn.q_proj.weight.T + attn.q_proj.bias
    k = (x @ attn.k_proj.weight.T + attn.k_proj.bias) / math.sqrt(d)
    v = x @ attn.v_proj.weight.T + attn.v_proj.bias
    lepe = F.conv2d(v.permute(0, 3, 1, 2), attn.lepe.conv.weight, attn.lepe.conv.bias, padding=2, groups=c)
    split = lambda t: t.view(b, h, w, n, d).permute(0, 3, 1, 2, 4)
    q, k, v = _rope(split(q), h, w), _rope(split(k), h, w), split(v)
    qf, kf, vf = q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)
    N = h * w
    if kind == "ppma":
        pe = attn.path_embed
        dt = x.view(b, h, w, n, d) @ pe.dt_linear.weight.T  # (b, h, w, n, 2)
        A = -torch.exp(pe.A_log)
        la = (A * F.softplus(dt[..., 0] + pe.dt_bias)).permute(0, 3, 1, 2)
        lb = (A * F.softplus(dt[..., 1] + pe.dt_bias)).permute(0, 3, 1, 2)
        # explicit path products: horizontal along the query row, then vertical along the key column
        M = torch.zeros(b, n, N, N)
        for i in range(h):
            for j in range(w):
                for i2 in range(h):
                    for j2 in range(w):
                        s = la[:, :, i, min(j, j2) + 1:max(j, j2) + 1].sum(-1) + \
                            lb[:, :, min(i, i2) + 1:max(i, i2) + 1, j2].sum(-1)
                        M[:, :, i * w + j, i2 * w + j2] = s
        if attn.mode == "full":
            S = qf @ kf.transpose(-1, -2)
            Pm = 0.5 * torch.softmax(S + M, -1) + 0.5 * torch.softmax(S + M.transpose(-1, -2), -1)
        else:
            rows = [M[:, :, i * w:(i + 1) * w, i * w:(i + 1) * w] for i in range(h)]  # Lw_i (horizontal only)
            cols = [M[:, :, j::w, j::w] for j in range(w)]  # Lh_j (vertical only)
            aw = torch.softmax(q @ k.transpose(-1, -2) + torch.stack(rows, 2), -1)
            ah = torch.softmax(q.transpose(2, 3) @ k.transpose(2, 3).transpose(-1, -2) + torch.stack(cols, 2), -1)
            R, C = _axial_ops(aw, ah, h, w)
            Pm = 0.5 * C @ R + 0.5 * R @ C
    else:
        gamma = torch.log(1 - 2 ** (-2.0 - 4.0 * torch.arange(n) / n))  # init 2, range 4 (RMT-T stage 1)
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ii, jj = ii.flatten().float(), jj.flatten().float()
        if attn.mode == "full":
            dist = (ii[:, None] - ii[None]).abs() + (jj[:, None] - jj[None]).abs()
            Pm = torch.softmax(qf @ kf.transpose(-1, -2) + dist * gamma[:, None, None], -1)
        else:
            dw = (torch.arange(w)[:, None] - torch.arange(w)[None]).abs().float() * gamma[:, None, None]
            dh = (torch.arange(h)[:, None] - torch.arange(h)[None]).abs().float() * gamma[:, None, None]
            aw = torch.softmax(q @ k.transpose(-1, -2) + dw[:, None], -1)
            ah = torch.softmax(q.transpose(2, 3) @ k.transpose(2, 3).transpose(-1, -2) + dh[:, None], -1)
            R, C = _axial_ops(aw, ah, h, w)
            Pm = C @ R  # rows first, then columns (one order only)
    o = (Pm @ vf).view(b, n, h, w, d).permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
    return (o + lepe.permute(0, 2, 3, 1)) @ attn.out_proj.weight.T + attn.out_proj.bias


def test_rope_equals_the_pair_rotation_with_its_gradient():
    # apply_rope takes the sin table with the rotation's signs folded in (swap pairs, no negation): the same
    # numbers as rotating each pair (x0, x1) by its angle, and the same gradient
    torch.manual_seed(0)
    h, w, n, d = 3, 7, 2, 8
    sin, cos = P.RotaryPositionEmbedding2D(n * d, n)(h, w)
    x = torch.randn(2, n, h, w, d, dtype=torch.float64, requires_grad=True)
    got = P.apply_rope(x, sin.double(), cos.double())
    want = _rope(x, h, w)
    assert torch.allclose(got, want, rtol=0, atol=1e-6)  # the tables are fp32 (as in the model)
    g = torch.randn_like(got)
    (dx,) = torch.autograd.grad(got, x, g)
    (dx_want,) = torch.autograd.grad(_rope(x, h, w), x, g)
    assert torch.allclose(dx, dx_want, rtol=0, atol=1e-6)
    with torch.no_grad():  # with x fp32 like the tables: bit for bit the rotation
        x32 = x.float()
        assert torch.equal(P.apply_rope(x32, sin, cos), _rope(x32, h, w))


def _official_rope(x, sin_signed, cos):
    """The official formula x cos + rotate_every_two(x) sin, rotate = (-x1, x0, -x3, x2, ...), with the plain sin
    table (our table carries the rotation's signs: undone exactly by negating the even channels)."""
    sin = sin_signed.clone()
    sin[..., 0::2] = -sin[..., 0::2]
    rotated = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
    return x * cos + rotated * sin


def test_rope_backward_is_the_official_formula_bit_for_bit():
    # apply_rope's own backward (g cos + swap_pairs(g sin)) against autograd through the official formula, on the
    # permuted q/k view the attention passes; fp64 gradcheck of the same function; tables with a gradient fall
    # back to autograd's formula
    torch.manual_seed(0)
    b, h, w, n, d = 2, 5, 7, 3, 8
    sin, cos = P.RotaryPositionEmbedding2D(n * d, n)(h, w)
    tokens = torch.randn(b, h, w, n * d, requires_grad=True)
    x = tokens.view(b, h, w, n, d).permute(0, 3, 1, 2, 4)
    g = torch.randn(b, n, h, w, d)
    got = P.apply_rope(x, sin, cos)
    want = _official_rope(x, sin, cos)
    assert torch.equal(got, want)
    assert torch.equal(torch.autograd.grad(got, tokens, g)[0], torch.autograd.grad(want, tokens, g)[0])
    x64 = torch.randn(1, 2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    sin64, cos64 = (t.double() for t in P.RotaryPositionEmbedding2D(12, 2)(3, 4))
    assert torch.autograd.gradcheck(lambda t: P.apply_rope(t, sin64, cos64), (x64,))
    sin_grad = sin64.clone().requires_grad_()
    assert torch.equal(P.apply_rope(x64, sin_grad, cos64), _official_rope(x64, sin_grad, cos64))
    assert torch.autograd.gradcheck(lambda t, s: P.apply_rope(t, s, cos64), (x64, sin_grad))


def _ffn_step(ffn, norm, x, grad, recompute, autocast=None):
    """``ffn(x, norm)``'s output and gradients (x's, then each parameter's of ``norm`` and ``ffn``)."""
    ffn.recompute = recompute
    modules = [norm, ffn] if norm is not None else [ffn]
    for m in modules:
        m.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(x.requires_grad)
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        out = ffn(x, norm)
    out.backward(grad.to(out.dtype))
    return [out, x.grad] + [p.grad for m in modules for p in m.parameters()]


@pytest.mark.parametrize("dtype, autocast", [(torch.float64, None), (torch.float32, None),
                                             (torch.float32, torch.bfloat16)])
@pytest.mark.parametrize("with_norm", [True, False])
def test_recomputed_ffn_is_feedforward_bit_for_bit(dtype, autocast, with_norm):
    # FeedForward(recompute=True) against its own module path, with the block's LayerNorm folded in or alone: the
    # output and every gradient equal bit for bit (in the dtypes and strides autograd gives them) but the
    # depthwise conv's bias gradient, a sum in another order; also with the input and fc1 frozen
    torch.manual_seed(0)
    ffn = randomize(P.FeedForward(16, 40).to(dtype))
    norm = randomize(nn.LayerNorm(16, eps=1e-6).to(dtype), seed=1) if with_norm else None
    x = torch.randn(2, 5, 7, 16, dtype=dtype, requires_grad=True)
    grad = torch.randn(2, 5, 7, 16, dtype=dtype)
    names = ["out", "x"] + (["norm.weight", "norm.bias"] if with_norm else []) \
        + [n for n, _ in ffn.named_parameters()]
    for frozen in (False, True):
        if frozen:
            ffn.fc1.requires_grad_(False)
            x = x.detach()
        want = _ffn_step(ffn, norm, x, grad, False, autocast)
        got = _ffn_step(ffn, norm, x, grad, True, autocast)
        assert len(got) == len(names)
        for name, a, b in zip(names, got, want):
            assert (a is None) == (b is None), name
            if a is None:
                continue
            assert a.dtype == b.dtype and a.stride() == b.stride(), name
            if name == "dwconv.conv.bias":
                assert_close(a, b, 0, 1e-6 if dtype == torch.float32 else 1e-13, what=name)
            else:
                assert torch.equal(a, b), name


def test_ffn_recompute_saves_less_for_the_same_values():
    # a whole model with ffn_recompute=True: the same logits and gradients, and the forward keeps for backward
    # exactly the GELU output, the fc2 input and the final LayerNorm's output and statistics of every block less
    # (B=1, 64x64: grids 16, 8, 4, 2; hidden width 2 x dims)
    from benchmarks.bench_models import saved_activation_bytes

    x = torch.randn(1, 3, 64, 64)
    runs = []
    for recompute in (False, True):
        torch.manual_seed(0)
        m = P.PPMAViT(**TINY, attn_type="rmt", ffn_recompute=recompute).train()
        out = []
        saved = saved_activation_bytes(m, lambda: out.append(m(x)))  # the forward's (not the backward's own)
        out[0].square().sum().backward()
        runs.append((saved, out[0].detach(), [p.grad for p in m.parameters()]))
    (saved, logits, grads), (saved_rc, logits_rc, grads_rc) = runs
    stages = [(16 * 16, 16, 1), (8 * 8, 32, 1), (4 * 4, 48, 2), (2 * 2, 64, 1)]  # tokens, dim, blocks
    assert saved - saved_rc == sum(4 * t * (2 * 2 * c + c + 2) * n for t, c, n in stages) == 161568
    assert torch.equal(logits, logits_rc)
    names = [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, grads_rc, grads):
        if not name.endswith("ffn.dwconv.conv.bias"):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("kind", ["ppma", "rmt"])
@pytest.mark.parametrize("mode", ["full", "criss_cross"])
def test_attention_block_matches_dense_math(kind, mode):
    torch.manual_seed(0)
    c, n, h, w = 16, 2, 3, 5
    if kind == "ppma":
        attn = P.PolylinePathAttention(c, n, mode)
        with torch.no_grad():
            attn.path_embed.dt_linear.weight.normal_(0, 1.0)
            attn.path_embed.dt_bias.normal_(0, 1.0)
    else:
        attn = P.ManhattanAttention(c, n, mode)
    relpos = P.RotaryPositionEmbedding2D(c, n, 2, 4, decay=kind == "rmt")
    x = torch.randn(2, h, w, c)
    sin, cos = relpos(h, w)
    with torch.no_grad():
        got = attn(x, sin, cos, (relpos.decay, None) if kind == "rmt" else None)
        want = _dense_block(attn, x, kind)
    err = (got - want).abs()
    assert err.max() < 2e-5, f"{kind}/{mode}: max abs err {err.max():.3e}, mean {err.mean():.3e}"


def test_mask_placement_ablation_and_impls():
    x = torch.randn(1, 3, 64, 64)
    base = timm.create_model("ppma_tiny", **TINY).eval()
    sd = base.state_dict()
    outs = {}
    for kw in (dict(attn_impl="reference"), dict(attn_impl="torch"), dict(mask_placement="post_softmax")):
        m = timm.create_model("ppma_tiny", **TINY, **kw).eval()
        m.load_state_dict(sd)
        with torch.no_grad():
            outs[next(iter(kw.values()))] = m(x)
    err = (outs["reference"] - outs["torch"]).abs().max()
    assert err < 1e-5, f"reference vs torch: max abs err {err:.3e}"
    assert not torch.allclose(outs["post_softmax"], outs["torch"])


def test_rmt_attention_impls_agree_on_forward_and_gradients():
    """RMT's kernel paths (the official explicit ops, SDPA / explicit ops, the compiled CPU path without masks)
    give one model: logits and every parameter gradient, in fp64 at an odd input size."""
    x = torch.randn(2, 3, 72, 40, dtype=torch.float64)
    base = timm.create_model("rmt_tiny", **TINY, drop_path_rate=0.0)
    results = {}
    for impl in ("reference", "torch", "auto"):
        m = timm.create_model("rmt_tiny", **TINY, attn_impl=impl, drop_path_rate=0.0).double().train()
        m.load_state_dict(base.state_dict())
        out = m(x)
        out.square().sum().backward()
        results[impl] = (out.detach(), {n: p.grad for n, p in m.named_parameters()})
    ref_out, ref_grads = results["reference"]
    for impl in ("torch", "auto"):
        out, grads = results[impl]
        torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10, msg=f"{impl} logits")
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], rtol=1e-8, atol=1e-9, msg=f"{impl} grad {name}")
