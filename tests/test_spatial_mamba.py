"""Spatial-Mamba family checks: exact parameter counts, official checkpoint layout round trip (classification
and downstream mmdet/mmseg backbone files), the token mixer against an independent dense formulation of the
spec's math, the never-stale eval state fusion (train == eval after weight updates), input errors."""
import math

import pytest
import timm
import torch
import torch.nn.functional as F

import models.spatial_mamba as sm
from models import CheckpointMismatchError
from helpers import randomize

NAMES = ("spatial_mamba_tiny", "spatial_mamba_small", "spatial_mamba_base")
PARAMS = {"spatial_mamba_tiny": 26_748_862, "spatial_mamba_small": 43_074_280, "spatial_mamba_base": 95_745_592}
CHANNELS = {"spatial_mamba_tiny": [64, 128, 256, 512], "spatial_mamba_small": [64, 128, 256, 512],
            "spatial_mamba_base": [96, 192, 384, 768]}
N_KEYS = {"spatial_mamba_tiny": 553, "spatial_mamba_small": 931, "spatial_mamba_base": 931}

# official key layout of one block (spec 3.6), T stage 0: C = 64, Di = 128, R = 4, N = 1
OFFICIAL_BLOCK_KEYS = {
    "cpe1.weight": (64, 1, 3, 3), "cpe1.bias": (64,), "ln_1.weight": (64,), "ln_1.bias": (64,),
    "self_attention.in_proj.weight": (256, 64),
    "self_attention.conv2d.weight": (128, 1, 3, 3), "self_attention.conv2d.bias": (128,),
    "self_attention.x_proj_weight": (6, 128), "self_attention.dt_projs_weight": (128, 4),
    "self_attention.dt_projs_bias": (128,), "self_attention.A_logs": (128, 1), "self_attention.Ds": (128,),
    "self_attention.state_fusion.kernel_3": (128, 1, 3, 3), "self_attention.state_fusion.kernel_3_1": (128, 1, 3, 3),
    "self_attention.state_fusion.kernel_3_2": (128, 1, 3, 3), "self_attention.state_fusion.alpha": (3,),
    "self_attention.out_norm.weight": (128,), "self_attention.out_norm.bias": (128,),
    "self_attention.out_proj.weight": (64, 128),
    "cpe2.weight": (64, 1, 3, 3), "cpe2.bias": (64,), "ln_2.weight": (64,), "ln_2.bias": (64,),
    "mlp.fc1.weight": (256, 64), "mlp.fc1.bias": (256,), "mlp.fc2.weight": (64, 256), "mlp.fc2.bias": (64,),
}
OFFICIAL_OTHER_KEYS = {
    "patch_embed.conv1.conv.weight": (32, 3, 3, 3), "patch_embed.conv1.norm.running_var": (32,),
    "patch_embed.conv2.0.conv.weight": (32, 32, 3, 3), "patch_embed.conv2.1.norm.weight": (32,),
    "patch_embed.conv3.0.conv.weight": (256, 32, 3, 3), "patch_embed.conv3.1.conv.weight": (64, 256, 1, 1),
    "layers.0.downsample.conv.0.conv.weight": (512, 64, 1, 1), "layers.0.downsample.conv.0.conv.bias": (512,),
    "layers.0.downsample.conv.1.conv.weight": (512, 1, 3, 3),
    "layers.0.downsample.conv.2.conv.weight": (128, 512, 1, 1), "layers.0.downsample.conv.2.norm.weight": (128,),
    "norm.weight": (512,), "head.weight": (1000, 512), "head.bias": (1000,),
}


def _err(a, b):
    d = (a - b).abs()
    return f"max err {d.max():.3e}, mean err {d.mean():.3e}"


# a narrow, shallow build of the registered tiny model (same code and key layout, fast on a busy CPU)
SMALL = dict(dims=16, depths=(1, 1, 2, 1))
SMALL_CHANNELS = [16, 32, 64, 128]


def _small(**kwargs):
    return timm.create_model("spatial_mamba_tiny", **SMALL, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = randomize(_small(), scale=0.02)
    for fusion in (mod for mod in m.modules() if isinstance(mod, sm.StateFusion)):
        randomize(fusion, seed=1, scale=0.3)  # the official init: all-ones fusion kernels and alpha
    return m.eval()


def test_registered_names():
    assert sorted(timm.list_models(module="spatial_mamba")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_exact_parameter_count_keys_and_feature_channels(name):
    with torch.device("meta"):
        m = timm.create_model(name)
    n = sum(p.numel() for p in m.parameters())
    assert n == PARAMS[name], f"{name}: {n:,} parameters, official {PARAMS[name]:,}"
    assert len(m.state_dict()) == N_KEYS[name]
    assert [f["num_chs"] for f in m.feature_info] == CHANNELS[name]
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]
    dims = CHANNELS[name]
    sd = m.state_dict()
    for i, C in enumerate(dims):  # dt_rank = ceil(C / 16) from C, not from Di
        assert tuple(sd[f"layers.{i}.blocks.0.self_attention.x_proj_weight"].shape) == (math.ceil(C / 16) + 2, 2 * C)


def test_official_key_table():
    with torch.device("meta"):
        sd = timm.create_model("spatial_mamba_tiny").state_dict()
    for k, shape in OFFICIAL_BLOCK_KEYS.items():
        assert tuple(sd[f"layers.0.blocks.1.{k}"].shape) == shape, k
    for k, shape in OFFICIAL_OTHER_KEYS.items():
        assert tuple(sd[k].shape) == shape, k


def test_official_checkpoint_round_trip_and_mismatch_errors(tiny, tmp_path):
    official = {k: v.clone() for k, v in tiny.state_dict().items()}  # official names == ours (spec 3.6)
    path = tmp_path / "spatial_mamba_tiny_official.pth"
    torch.save({"model": official, "max_accuracy": 0.0, "epoch": 299, "max_accuray_ema": 0.0}, path)
    m = timm.create_model("spatial_mamba_tiny", **SMALL, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        a, b = tiny(x), m(x)
    assert torch.equal(a, b), _err(a, b)
    # EMA weights by key
    torch.save({"model": {}, "model_ema": official}, path)
    m = _small()
    m.load_pretrained(str(path), checkpoint_key="model_ema")
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), a)
    # renamed key
    bad = dict(official)
    bad["layers.1.blocks.0.self_attention.A_log"] = bad.pop("layers.1.blocks.0.self_attention.A_logs")
    torch.save({"model": bad}, path)
    with pytest.raises(CheckpointMismatchError, match=r"layers\.1\.blocks\.0\.self_attention\.A_log"):
        timm.create_model("spatial_mamba_tiny", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    # wrong shape (d_state 2 checkpoint)
    bad = dict(official)
    bad["layers.0.blocks.0.self_attention.A_logs"] = torch.zeros(32, 2)
    torch.save({"model": bad}, path)
    with pytest.raises(CheckpointMismatchError, match=r"layers\.0\.blocks\.0\.self_attention\.A_logs"):
        timm.create_model("spatial_mamba_tiny", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_downstream_backbone_checkpoint_with_outnorms(tiny, tmp_path):
    sd = {k: v.clone() for k, v in tiny.state_dict().items() if not k.startswith(("norm.", "head."))}
    for i, C in enumerate(SMALL_CHANNELS):
        sd[f"outnorm{i}.weight"] = torch.rand(C) + 0.5
        sd[f"outnorm{i}.bias"] = torch.randn(C)
    path = tmp_path / "mask_rcnn_spatialmamba_tiny.pth"
    torch.save({"state_dict": {**{"backbone." + k: v for k, v in sd.items()},
                               "neck.lateral_convs.0.conv.weight": torch.zeros(1),
                               "roi_head.bbox_head.fc_cls.weight": torch.zeros(1)}}, path)
    feat = timm.create_model("spatial_mamba_tiny", **SMALL, pretrained=True, features_only=True, out_norm=True,
                             pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        outs = feat(x)
        raw = tiny.forward_intermediates(x, intermediates_only=True)
    for i, (o, r) in enumerate(zip(outs, raw)):
        ln = F.layer_norm(r.permute(0, 2, 3, 1), r.shape[1:2], sd[f"outnorm{i}.weight"], sd[f"outnorm{i}.bias"])
        assert torch.allclose(o, ln.permute(0, 3, 1, 2), atol=1e-5), _err(o, ln.permute(0, 3, 1, 2))
    # ... but not into a classifier: no random head or final norm is left behind silently
    with pytest.raises(CheckpointMismatchError, match=r"missing keys .*head\.weight"):
        timm.create_model("spatial_mamba_tiny", **SMALL, pretrained=True, out_norm=True,
                          pretrained_cfg_overlay=dict(file=str(path)))
    # a classification checkpoint loads into an out_norm backbone (out-norms stay identity, as official)
    cls_path = tmp_path / "cls.pth"
    torch.save({"model": tiny.state_dict()}, cls_path)
    feat = timm.create_model("spatial_mamba_tiny", **SMALL, pretrained=True, features_only=True, out_norm=True,
                             out_indices=(1, 3), pretrained_cfg_overlay=dict(file=str(cls_path))).eval()
    with torch.no_grad():
        outs = feat(x)
    for o, r in zip(outs, (raw[1], raw[3])):
        ln = F.layer_norm(r.permute(0, 2, 3, 1), r.shape[1:2]).permute(0, 3, 1, 2)
        assert torch.allclose(o, ln, atol=1e-5), _err(o, ln)


# ------------------------------------------------------------------ the mixer vs a dense formulation
def _dense_sassm(mod, x):
    """Independent dense form of spec 1.3 (fp64): h = M u with M[t, s] = prod_{j=s+1..t} abar_j * delta_s B_s,
    then the 2-D fusion as an explicit L x L matrix of the 27 clamped taps, y = C h_f + D u."""
    Bsz, H, W, C = x.shape
    L = H * W
    Di, R = mod.d_inner, mod.dt_rank
    xz = x @ mod.in_proj.weight.T
    xi, z = xz[..., :Di], xz[..., Di:]
    u = F.silu(F.conv2d(xi.permute(0, 3, 1, 2), mod.conv2d.weight, mod.conv2d.bias, padding=1, groups=Di))
    u = u.reshape(Bsz, Di, L)
    xd = torch.einsum("rd,bdl->brl", mod.x_proj_weight, u)
    dt = F.softplus(torch.einsum("dr,brl->bdl", mod.dt_projs_weight, xd[:, :R]) + mod.dt_projs_bias[:, None])
    Bt, Ct = xd[:, R], xd[:, R + 1]
    A = -torch.exp(mod.A_logs[:, 0])
    cs = torch.cumsum(dt, -1)  # prod_{j=s+1..t} exp(dt_j A) = exp(A (cs_t - cs_s))
    decay = torch.exp(A[None, :, None, None] * (cs[..., :, None] - cs[..., None, :]))
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    M = torch.where(causal, decay, torch.zeros((), dtype=x.dtype)) * (dt * Bt[:, None])[..., None, :]
    h = torch.einsum("bdts,bds->bdt", M, u)
    sf = mod.state_fusion
    S = torch.zeros(Di, L, L, dtype=x.dtype)
    for i, (k, dil) in enumerate(zip((sf.kernel_3, sf.kernel_3_1, sf.kernel_3_2), (1, 3, 5))):
        for p in range(L):
            r, c = divmod(p, W)
            for a in range(3):
                for b in range(3):
                    q = min(max(r + dil * (a - 1), 0), H - 1) * W + min(max(c + dil * (b - 1), 0), W - 1)
                    S[:, p, q] += sf.alpha[i] * k[:, 0, a, b]
    hf = torch.einsum("dpq,bdq->bdp", S, h)
    y = Ct[:, None] * hf + mod.Ds[:, None] * u
    y = y.reshape(Bsz, Di, H, W).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (Di,), mod.out_norm.weight, mod.out_norm.bias) * F.silu(z)
    return y @ mod.out_proj.weight.T


@pytest.mark.parametrize("H,W", [(5, 7), (1, 3)])
def test_structure_aware_ssm_matches_dense_formulation(H, W):
    torch.manual_seed(0)
    mod = sm.StructureAwareSSM(8).double()
    with torch.no_grad():
        for p in mod.state_fusion.parameters():
            p.copy_(0.3 * torch.randn_like(p))
        mod.A_logs.normal_(0, 0.5)
        mod.Ds.normal_()
        mod.out_norm.weight.normal_(1, 0.1)
    x = torch.randn(2, H, W, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = _dense_sassm(mod, x)
        for mode in (True, False):
            out = mod.train(mode)(x)
            assert torch.allclose(out, ref, atol=1e-11, rtol=1e-9), f"train={mode}: {_err(out, ref)}"


def test_eval_fusion_is_never_stale_and_train_equals_eval(tiny):
    m = _small(drop_path_rate=0.0)
    m.load_state_dict(tiny.state_dict())
    m.eval()
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        before = m(x)
    # a training step (as between two per-epoch validations): train-mode forward/backward, then new weights
    m.train()
    for mod in m.modules():  # BN in eval so that only the fusion path differs between the two modes
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    m(x).square().mean().backward()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "state_fusion" in n:
                p.add_(0.2 * torch.randn_like(p))
        train_out = m(x)
        m.eval()
        eval_out = m(x)
    change = (eval_out - before).abs().max()
    mismatch = (eval_out - train_out).abs().max()
    assert change > 50 * mismatch, f"eval output barely changed ({change:.3e}): stale fused kernel?"
    assert mismatch < 1e-5, _err(eval_out, train_out)
    # the same at the mixer level, where the fusion dominates
    mix = m.layers[0].blocks[0].self_attention
    t = torch.randn(1, 6, 9, 16)
    with torch.no_grad():
        e0 = mix.eval()(t)
        mix.state_fusion.alpha.mul_(-1.5)
        e1, t1 = mix.eval()(t), mix.train()(t)
    assert (e1 - e0).abs().max() > 100 * (e1 - t1).abs().max(), _err(e1, t1)
    m.eval()
    # loading other weights after an eval forward also takes effect
    m.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        after = m(x)
    assert torch.allclose(after, before, atol=1e-6), _err(after, before)


def test_unfused_eval_and_d_state_extension():
    torch.manual_seed(0)
    m = sm.SpatialMamba(dims=16, depths=(1, 1, 1, 1), d_state=4, num_classes=3).eval()
    x = torch.randn(1, 3, 40, 24)
    with torch.no_grad():
        a = m(x)
        for mod in m.modules():
            if isinstance(mod, sm.StateFusion):
                mod.fused_eval = False
        b = m(x)
    assert a.shape == (1, 3) and torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-5), _err(a, b)


def test_input_errors_and_tiny_inputs(tiny):
    with pytest.raises(ValueError, match="3 input channels, got 4"):
        tiny(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="B, C, H, W"):
        tiny(torch.randn(3, 64, 64))
    with torch.no_grad():  # no minimum size: odd sizes round up at every stride-2 step, down to 1 x 1 tokens
        assert tiny(torch.randn(1, 3, 1, 1)).shape == (1, 1000)
        assert [f.shape[-2:] for f in tiny.forward_intermediates(torch.randn(1, 3, 33, 70), intermediates_only=True)] \
            == [(9, 18), (5, 9), (3, 5), (2, 3)]


def test_bf16_autocast_training_step_is_finite():
    torch.manual_seed(0)
    m = sm.SpatialMamba(dims=16, depths=(1, 1, 1, 1), num_classes=4).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.randn(2, 3, 36, 44))
    out.float().square().mean().backward()
    assert torch.isfinite(out.float()).all()
    bad = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, bad[:5]
