"""PaCa-ViT family tests: exact parameter counts and feature channels of every registered name, official
checkpoint layout round trip, block math against a dense formulation, input errors, variant isolation.

Generic forward/backward, features_only, num_classes, drop_path and grad-checkpointing checks live in
tests/test_models.py.
"""
import math

import pytest
import timm
import torch
from torch import nn

import models.pacavit as pacavit
from models._checkpoint import CheckpointMismatchError, load_checkpoint
from models.pacavit import PaCaAttention, PaCaBlock, PaCaViT
from helpers import assert_close, randomize

# name -> (official parameter count, official state_dict key count, feature channels, default drop_path_rate)
TINY_CHS = (96, 192, 320, 384)
BASE_CHS = (96, 192, 384, 512)
VARIANTS = {
    "pacavit_tiny_p2cconv_100_0": (12_200_680, 239, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_100_0": (22_037_704, 417, TINY_CHS, 0.1),
    "pacavit_base_p2cconv_100_0": (46_911_304, 577, BASE_CHS, 0.5),
    "pacavit_small_p2cmlp_100_0": (22_637_268, 414, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_2_0": (21_978_120, 417, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_49_0": (22_006_696, 417, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_49_100": (22_227_560, 428, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_100_49": (22_210_696, 428, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_100": (22_245_448, 428, TINY_CHS, 0.1),
    "pacavit_small_p2cconv_100_blockwise": (24_191_944, 503, TINY_CHS, 0.1),
    "pacavit_convmixer_tiny_100": (12_483_672, 395, TINY_CHS, 0.1),
    "pacavit_convmixer_small_100": (21_075_064, 555, TINY_CHS, 0.1),
    "pacavit_convmixer_base_100": (47_659_192, 763, BASE_CHS, 0.1),
}
VARIANTS["pacavit_tiny"] = VARIANTS["pacavit_tiny_p2cconv_100_0"]
VARIANTS["pacavit_small"] = VARIANTS["pacavit_small_p2cconv_100_0"]
VARIANTS["pacavit_base"] = VARIANTS["pacavit_base_p2cconv_100_0"]


def _meta_model(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


# ------------------------------------------------------------------------------------------------------
# Registry, parameter counts, layout
# ------------------------------------------------------------------------------------------------------
def test_registered_names():
    assert sorted(timm.list_models(module="pacavit")) == sorted(VARIANTS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_param_count_keys_and_feature_channels(name):
    params, keys, chs, dpr = VARIANTS[name]
    model = _meta_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert n == params, f"{name}: {n} parameters, official {params} (diff {n - params})"
    assert len(model.state_dict()) == keys, f"{name}: {len(model.state_dict())} state_dict keys, official {keys}"
    assert tuple(f["num_chs"] for f in model.feature_info) == chs
    assert tuple(f["reduction"] for f in model.feature_info) == (4, 8, 16, 32)
    assert model.num_features == chs[-1]
    # official default stochastic depth: the last main-network block gets drop_path_rate
    last = model.stage4[-1]
    assert last.drop_path1.drop_prob == pytest.approx(dpr)


def test_clustering_placement():
    """Stage-wise: only block 0 clusters; block-wise: all; teacher: none; every i blocks: j % i == 0;
    M = 0: plain attention without cluster norm."""
    m = _meta_model("pacavit_small_p2cconv_100_0")
    for i, stage in enumerate([m.stage1, m.stage2, m.stage3]):
        assert [b.attn.clustering is not None for b in stage] == [True] + [False] * (len(stage) - 1), i
        assert all(isinstance(b.attn.cluster_norm, nn.LayerNorm) for b in stage)
    assert all(b.attn.num_clusters == 0 and not hasattr(b.attn, "cluster_norm") for b in m.stage4)
    m = _meta_model("pacavit_small_p2cconv_100_blockwise")
    assert all(b.attn.clustering is not None for s in (m.stage1, m.stage2, m.stage3, m.stage4) for b in s)
    m = _meta_model("pacavit_convmixer_small_100")
    assert all(b.attn.clustering is None for s in (m.stage1, m.stage2, m.stage3, m.stage4) for b in s)
    assert [m.paca_teacher.to_clusters4.out_channels, len(m.paca_teacher.block3)] == [100, 2]
    with torch.device("meta"):
        m = PaCaViT(depths=(2, 2, 6, 2), onsite_clustering=(0, 1, 3, 0), num_clusters=(3, 4, 5, 6),
                    clustering="mlp")
    assert [b.attn.clustering is not None for b in m.stage3] == [True, False, False, True, False, False]
    assert [b.attn.clustering is not None for b in m.stage2] == [True, True]
    assert m.stage3[0].attn.clustering.clustering[2].out_features == 5


def test_building_variants_does_not_mutate_settings():
    """The official factories pop from shared dicts (second teacher build -> KeyError); ours must not."""
    before = {n: pacavit.variant_args(n) for n in VARIANTS}
    for name in ["pacavit_convmixer_tiny_100", "pacavit_convmixer_tiny_100", "pacavit_tiny", "pacavit_base"]:
        _meta_model(name, drop_path_rate=0.3, num_classes=7)
    assert {n: pacavit.variant_args(n) for n in VARIANTS} == before
    m = _meta_model("pacavit_convmixer_tiny_100")
    assert sum(p.numel() for p in m.parameters()) == VARIANTS["pacavit_convmixer_tiny_100"][0]
    assert m.stage4[-1].drop_path1.drop_prob == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------------------
# Official checkpoint layout
# ------------------------------------------------------------------------------------------------------
def _official_layout_state_dict(name, seed=0):
    """A state dict in the official key layout (spec 2.4) with random values, made from shapes only (the
    official layout is the one this implementation uses; test_official_layout_facts_tiny pins it)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in _meta_model(name).state_dict().items():
        if k.endswith("blur_filter"):
            sd[k] = (torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16).expand(v.shape)
        elif k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            sd[k] = 0.05 * torch.randn(v.shape, generator=g) + (1.0 if k.endswith("norm.weight") else 0.0)
    return sd


def _reference(name, sd):
    """The same architecture, built without initialisation (meta -> empty) and loaded strictly with torch."""
    model = _meta_model(name).to_empty(device="cpu")
    model.load_state_dict(sd, strict=True)
    return model.eval()


def test_official_layout_facts_tiny():
    sd = _meta_model("pacavit_tiny_p2cconv_100_0").state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    expect = {
        "patch_embed.proj.0.weight": (48, 3, 3, 3),
        "patch_embed.proj.1.weight": (96, 48, 3, 3),
        "patch_embed.norm.weight": (96,),
        "stage1.0.norm1_before.weight": (96,),
        "stage1.0.attn.cluster_norm.weight": (96,),
        "stage1.0.attn.clustering.clustering.0.weight": (96, 1, 7, 7),
        "stage1.0.attn.clustering.clustering.2.weight": (96, 96, 1, 1),
        "stage1.0.attn.clustering.clustering.4.weight": (100, 96, 1, 1),
        "stage1.0.attn.q.weight": (96, 96),
        "stage1.0.attn.proj.bias": (96,),
        "stage1.1.attn.cluster_norm.weight": (96,),
        "stage1.0.mlp.fc1.weight": (384, 96),
        "stage1.0.mlp.dwconv.dwconv.weight": (384, 1, 3, 3),
        "stage1.0.mlp.fc2.weight": (96, 384),
        "stage4.1.attn.k.weight": (384, 384),
        "norm4.weight": (384,),
        "transition1.proj.weight": (192, 96, 3, 3),
        "transition3.norm.bias": (384,),
        "head.weight": (1000, 384),
    }
    for k, s in expect.items():
        assert shapes.get(k) == s, f"{k}: {shapes.get(k)} vs official {s}"
    assert "stage1.0.attn.clustering.clustering.4.bias" not in shapes
    assert not any(k.startswith("stage1.1.attn.clustering") for k in shapes)
    assert not any(k.startswith("stage4.0.attn.cluster") for k in shapes)
    teacher = _meta_model("pacavit_convmixer_tiny_100").state_dict()
    for k, s in {
        "paca_teacher.block1.0.0.fn.0.weight": (96, 1, 7, 7),
        "paca_teacher.block1.0.0.fn.2.running_var": (96,),
        "paca_teacher.block1.0.1.weight": (96, 96, 1, 1),
        "paca_teacher.block1.0.3.num_batches_tracked": (),
        "paca_teacher.transition1.0.blur_filter": (96, 1, 3, 3),
        "paca_teacher.transition1.0.conv.weight": (192, 96, 3, 3),
        "paca_teacher.transition1.2.weight": (192,),
        "paca_teacher.lateral1.0.weight": (96, 192, 1, 1),
        "paca_teacher.fpn3.0.fn.0.weight": (320, 1, 7, 7),
        "paca_teacher.to_clusters4.weight": (100, 384, 1, 1),
    }.items():
        assert tuple(teacher[k].shape) == s, f"{k}: {tuple(teacher[k].shape)} vs official {s}"
    assert not any(".attn.clustering" in k for k in teacher)


@pytest.mark.parametrize("name,container", [("pacavit_tiny_p2cconv_100_0", None),
                                            ("pacavit_convmixer_tiny_100", "state_dict")])
def test_official_checkpoint_round_trip(name, container, tmp_path):
    sd = _official_layout_state_dict(name)
    path = tmp_path / f"IMNET_224_{name}.pth"
    torch.save(sd if container is None else {container: sd, "epoch": 299}, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    ours = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(ours[k], v), k
    ref = _reference(name, sd)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert_close(model(x), ref(x), 0.0, what="logits after loading the official-layout file")
        if container is None:
            # features_only drops the classifier and loads the backbone
            feats = timm.create_model(name, pretrained=True, features_only=True,
                                      pretrained_cfg_overlay=dict(file=str(path))).eval()
            for i, (a, b) in enumerate(zip(feats(x), ref.forward_intermediates(x, intermediates_only=True))):
                assert_close(a, b, 0.0, what=f"stage {i} features")


def test_corrupted_checkpoint_fails_naming_keys(tmp_path):
    sd = {k: torch.zeros(v.shape) for k, v in _meta_model("pacavit_tiny_p2cconv_100_0").state_dict().items()}
    renamed = dict(sd)
    renamed["stage1.0.attn.query.weight"] = renamed.pop("stage1.0.attn.q.weight")
    torch.save({"model": renamed}, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointMismatchError, match=r"stage1\.0\.attn\.q\.weight") as err:
        timm.create_model("pacavit_tiny_p2cconv_100_0", pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "renamed.pth")))
    assert "stage1.0.attn.query.weight" in str(err.value)
    # features_only (a headless model) is checked as strictly
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\): stage1\.0\.attn\.query\.weight"):
        timm.create_model("pacavit_tiny_p2cconv_100_0", pretrained=True, features_only=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "renamed.pth")))

    meta = _meta_model("pacavit_tiny_p2cconv_100_0")
    wrong = dict(sd)
    wrong["stage2.0.attn.clustering.clustering.4.weight"] = torch.zeros(49, 192, 1, 1)
    with pytest.raises(CheckpointMismatchError,
                       match=r"stage2\.0\.attn\.clustering\.clustering\.4\.weight: checkpoint \(49, 192, 1, 1\)"):
        load_checkpoint(meta, wrong, pacavit.checkpoint_filter_fn)
    # a checkpoint of another variant (more blocks, clusters in stage 4)
    other = {k: torch.zeros(v.shape) for k, v in _meta_model("pacavit_small_p2cconv_100").state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys .*stage1\.2\."):
        load_checkpoint(meta, {"state_dict": other}, pacavit.checkpoint_filter_fn)
    # a teacher checkpoint without its blur buffers
    teacher = _meta_model("pacavit_convmixer_tiny_100")
    tsd = {k: torch.zeros(v.shape) for k, v in teacher.state_dict().items() if not k.endswith("blur_filter")}
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(3\): paca_teacher\.transition1\.0\.blur_filter"):
        load_checkpoint(teacher, tsd, pacavit.checkpoint_filter_fn)
    # own / official keys pass unchanged, also with a DataParallel prefix; the classifier may differ
    assert pacavit.checkpoint_filter_fn(sd, meta).keys() == sd.keys()
    assert pacavit.checkpoint_filter_fn({"module." + k: v for k, v in sd.items()}, meta).keys() == sd.keys()
    headless = {k: v for k, v in sd.items() if not k.startswith("head.")}
    assert pacavit.checkpoint_filter_fn(headless, meta).keys() == headless.keys()


# ------------------------------------------------------------------------------------------------------
# Block math vs a dense formulation (float64, written from the spec, loops where it helps clarity)
# ------------------------------------------------------------------------------------------------------
def _gelu(t):
    return 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))


def _ln(t, mod):
    mu = t.mean(-1, keepdim=True)
    var = ((t - mu) ** 2).mean(-1, keepdim=True)
    return (t - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias


def _lin(t, mod):
    out = t @ mod.weight.t()
    return out if mod.bias is None else out + mod.bias


def _softmax(t):
    e = torch.exp(t - t.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def _grid(x, H, W):
    """tokens (B, N, C), row-major n = r * W + c -> list of grid rows [B, C] indexed [r][c]."""
    return [[x[:, r * W + c] for c in range(W)] for r in range(H)]


def _dw_dense(x, H, W, weight, bias):
    """Depth-wise conv with zero padding k//2 on tokens (B, N, C); weight (C, 1, k, k)."""
    k = weight.shape[-1]
    p = k // 2
    g = _grid(x, H, W)
    out = torch.zeros_like(x)
    for r in range(H):
        for c in range(W):
            acc = bias.clone().expand(x.shape[0], -1).clone()
            for a in range(k):
                for b in range(k):
                    rr, cc = r + a - p, c + b - p
                    if 0 <= rr < H and 0 <= cc < W:
                        acc = acc + weight[:, 0, a, b] * g[rr][cc]
            out[:, r * W + c] = acc
    return out


def _attention_dense(attn, xn, H, W, z):
    B, N, C = xn.shape
    if attn.num_clusters > 0:
        if attn.clustering is not None:
            seq = attn.clustering.clustering
            if isinstance(seq[0], nn.Conv2d):  # conv clustering
                h = _gelu(_dw_dense(xn, H, W, seq[0].weight, seq[0].bias))
                h = _gelu(h @ seq[2].weight[:, :, 0, 0].t() + seq[2].bias)
                logits = (h @ seq[4].weight[:, :, 0, 0].t()).transpose(1, 2)  # (B, M, N)
            else:  # mlp clustering
                logits = _lin(_gelu(_lin(xn, seq[0])), seq[2]).transpose(1, 2)
            z = _softmax(logits)  # over the N patches
        c = torch.stack([sum(z[:, m, n, None] * xn[:, n] for n in range(N)) for m in range(z.shape[1])], 1)
        c = _ln(c, attn.cluster_norm)
    else:
        c = xn
    q, k, v = _lin(xn, attn.q), _lin(c, attn.k), _lin(c, attn.v)
    d = C // attn.num_heads
    out = torch.zeros_like(q)
    for h in range(attn.num_heads):
        s = slice(h * d, (h + 1) * d)
        p = _softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d))
        out[..., s] = p @ v[..., s]
    return _lin(out, attn.proj), z


def _block_dense(block, x, H, W, z):
    a, z = _attention_dense(block.attn, _ln(x, block.norm1_before), H, W, z)
    x = x + a
    h = _lin(_ln(x, block.norm2_before), block.mlp.fc1)
    h = _dw_dense(h, H, W, block.mlp.dwconv.dwconv.weight, block.mlp.dwconv.dwconv.bias) + h
    return x + _lin(_gelu(h), block.mlp.fc2), z


@pytest.mark.parametrize("clustering,num_clusters", [("conv", 5), ("mlp", 7), (None, 0)])
def test_block_matches_dense_math(clustering, num_clusters):
    """PaCa block (conv / mlp clustering, and plain attention when M = 0) on a 3x4 grid, plus the
    stage-wise follower block that reuses block 0's assignment z."""
    H, W, C, heads = 3, 4, 8, 2
    first = randomize(PaCaBlock(C, heads, num_clusters, clustering, clustering_kernel_size=3, mlp_ratio=2),
                      scale=0.3).double().eval()
    follower = randomize(PaCaBlock(C, heads, num_clusters, None, mlp_ratio=2), seed=1, scale=0.3).double().eval()
    x = torch.randn(2, H * W, C, dtype=torch.float64)
    with torch.no_grad():
        y, z = first(x, H, W, None)
        y_ref, z_ref = _block_dense(first, x, H, W, None)
        assert_close(y, y_ref, 1e-10, what=f"{clustering} block")
        if num_clusters:
            assert_close(z, z_ref, 1e-12, what="cluster assignment")
            assert_close(z.sum(-1), torch.ones(2, num_clusters, dtype=torch.float64), 1e-12, what="softmax over N")
        else:
            assert z is None
        y2, z2 = follower(y, H, W, z)
        y2_ref, _ = _block_dense(follower, y, H, W, z_ref)
        assert_close(y2, y2_ref, 1e-10, what="stage-wise follower block")
        assert z2 is z


def test_teacher_blur_and_assignments():
    """Teacher transition blurs with [1 2 1]x[1 2 1]/16 before its strided conv; z is a softmax over N."""
    model = PaCaViT(embed_dims=(8, 8, 16, 16), num_heads=(2, 2, 2, 2), depths=(1, 1, 1, 1),
                    clustering="teacher", teacher_depths=(1, 1, 1, 1), num_clusters=(3, 0, 4, 2),
                    num_classes=0).double().eval()
    blur = model.paca_teacher.transition1[0]
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    xp = nn.functional.pad(x, (1, 1, 1, 1))
    k = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    k2 = torch.outer(k, k) / 16
    blurred = sum(k2[a, b] * xp[:, :, a:a + 5, b:b + 6] for a in range(3) for b in range(3))
    with torch.no_grad():
        assert_close(blur(x), blur.conv(blurred), 1e-12, what="BlurConv2d")
        zs, outs = model.paca_teacher(model.patch_embed(torch.randn(2, 3, 64, 48, dtype=torch.float64)))
    assert [None if z is None else tuple(z.shape) for z in zs] == [(2, 3, 192), None, (2, 4, 12), (2, 2, 4)]
    for z in zs:
        if z is not None:
            assert_close(z.sum(-1), torch.ones(z.shape[:2], dtype=torch.float64), 1e-12, what="teacher softmax")
    assert [tuple(o.shape) for o in outs] == [(2, 192, 8), (2, 48, 8), (2, 12, 16), (2, 4, 16)]


# ------------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------------
def _small_model(**kw):
    args = dict(embed_dims=(8, 16, 16, 16), num_heads=(2, 2, 2, 2), depths=(1, 1, 1, 1),
                num_clusters=(3, 3, 3, 0), num_classes=4)
    args.update(kw)
    return PaCaViT(**args).eval()


def test_input_errors():
    model = _small_model()
    with pytest.raises(ValueError, match=r"at least 32x32"):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r"at least 32x32"):
        model.forward_intermediates(torch.randn(1, 3, 64, 16))
    with pytest.raises(ValueError, match=r"3 input channels, got 1"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(3, 64, 64))
    teacher = _small_model(clustering="teacher", teacher_depths=(1, 1, 1, 1)).train()
    with pytest.raises(ValueError, match=r"BatchNorm .*batch of 2\+ images"):
        teacher(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"teacher_depths"):
        _small_model(clustering="teacher")
    with pytest.raises(ValueError, match=r"clustering must be one of"):
        _small_model(clustering="kmeans")
    with pytest.raises(ValueError, match=r"num_clusters needs 4 entries"):
        _small_model(num_clusters=(3, 3, 3))


def test_minimum_and_odd_sizes():
    model = _small_model(num_clusters=(3, 3, 3, 5))  # M = 5 > N = 1 at the minimum size
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
        feats = model.forward_intermediates(torch.randn(1, 3, 70, 45), intermediates_only=True)
    assert [tuple(f.shape[2:]) for f in feats] == [(18, 12), (9, 6), (5, 3), (3, 2)]


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_traced_attention_path_matches_sdpa():
    """Under torch.jit.trace (fvcore) the attention is written out explicitly; it must give the same values."""
    class OnGrid(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = PaCaAttention(16, 4, num_clusters=6, clustering="conv", clustering_kernel_size=3)

        def forward(self, t):
            return self.attn(t, 4, 5)[0]

    module = OnGrid().eval()
    x = torch.randn(2, 20, 16)
    with torch.no_grad():
        eager = module(x)
        traced = torch.jit.trace(module, (x,), check_trace=False)(x)
    assert_close(traced, eager, 1e-5, what="traced vs SDPA attention")
