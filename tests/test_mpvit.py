"""MPViT family tests: exact sizes, official checkpoint layout (with its aliased shared modules), the
factorized attention + conv relative position encoding against a dense formulation, input errors.

Generic behaviour (forward/backward, features_only, reset_classifier, drop_path, grad checkpointing) is
covered by tests/test_models.py for every registered model.
"""
import argparse
import copy

import pytest
import timm
import torch
import torch.nn.functional as F

import models.mpvit as mpvit
from models._checkpoint import CheckpointMismatchError
from helpers import assert_close, randomize

NAMES = ("mpvit_tiny", "mpvit_xsmall", "mpvit_small", "mpvit_base")

# official counts (model docstrings / spec 3.2, 3.3)
PARAMS = {"mpvit_tiny": 5_843_736, "mpvit_xsmall": 10_573_448, "mpvit_small": 22_892_400, "mpvit_base": 74_845_976}
OFFICIAL_KEYS = {"mpvit_tiny": 873, "mpvit_xsmall": 873, "mpvit_small": 1263, "mpvit_base": 1419}
UNIQUE_TENSORS = {"mpvit_tiny": 551, "mpvit_xsmall": 551, "mpvit_small": 731, "mpvit_base": 803}
STAGE_CHANNELS = {
    "mpvit_tiny": (96, 176, 216, 216),
    "mpvit_xsmall": (128, 192, 256, 256),
    "mpvit_small": (128, 216, 288, 288),
    "mpvit_base": (224, 368, 480, 480),
}
DROP_PATH = {"mpvit_tiny": 0.0, "mpvit_xsmall": 0.0, "mpvit_small": 0.05, "mpvit_base": 0.3}

# a very small MPViT built through the registered builder (fast on CPU)
SMALL = dict(embed_dims=(16, 24, 32, 40), num_layers=(1, 2, 1, 1), mlp_ratios=(2, 2, 2, 2))


@pytest.fixture(autouse=True)
def _one_thread():
    """Every tensor here is tiny: intra-op threads only add synchronisation cost (badly so on busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _meta_model(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def to_official_layout(sd):
    """Inverse of checkpoint_filter_fn, written independently: re-create the official alias keys of every
    encoder's shared cpe / crpe under each of its blocks (and each block's attention), sharing the tensor."""
    out = dict(sd)
    layers = {}
    for k in sd:
        if ".MHCA_layers." in k:
            enc, rest = k.split(".MHCA_layers.")
            layers.setdefault(enc, set()).add(int(rest.split(".")[0]))
    for k, v in sd.items():
        for enc, idx in layers.items():
            if k.startswith(enc + ".cpe."):
                tail = k[len(enc) + len(".cpe."):]
                for i in idx:
                    out[f"{enc}.MHCA_layers.{i}.cpe.{tail}"] = v
            elif k.startswith(enc + ".crpe."):
                tail = k[len(enc) + len(".crpe."):]
                for i in idx:
                    out[f"{enc}.MHCA_layers.{i}.crpe.{tail}"] = v
                    out[f"{enc}.MHCA_layers.{i}.factoratt_crpe.crpe.{tail}"] = v
    return out


def _official_container(sd):
    # as the official main.py saves it (plus an argparse.Namespace, as DeiT-style trainers do). The official
    # eval loads 'model'; 'model_ema' gets different values here so that picking it would be detected.
    ema = {k: v + 1.0 if v.is_floating_point() else v for k, v in sd.items()}
    return {"model": sd, "optimizer": {}, "lr_scheduler": {}, "epoch": 299, "model_ema": ema,
            "args": argparse.Namespace(model="mpvit_tiny")}


def _randomized_small_model(**kwargs):
    torch.manual_seed(0)
    return randomize(timm.create_model("mpvit_tiny", **SMALL, **kwargs), scale=0.05).eval()


# ------------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize("name", NAMES)
def test_param_counts_keys_and_channels(name):
    model = _meta_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS[name], f"{name}: {n:,} params, official {PARAMS[name]:,}"
    sd = model.state_dict()
    assert len(sd) == UNIQUE_TENSORS[name]
    assert len(to_official_layout(sd)) == OFFICIAL_KEYS[name]
    assert tuple(f["num_chs"] for f in model.feature_info) == STAGE_CHANNELS[name]
    assert tuple(f["reduction"] for f in model.feature_info) == (4, 8, 16, 32)
    last = model.mhca_stages[3].mhca_blks[0].MHCA_layers[-1].drop_path
    assert getattr(last, "drop_prob", 0.0) == pytest.approx(DROP_PATH[name])
    assert model.get_classifier() is model.cls_head.cls


def test_registered_names():
    assert sorted(timm.list_models(module="mpvit")) == sorted(NAMES)


def test_drop_path_rate_and_num_classes_are_honoured():
    model = timm.create_model("mpvit_small", **SMALL, drop_path_rate=0.2, num_classes=7)
    dps = [getattr(blk.drop_path, "drop_prob", 0.0) for st in model.mhca_stages for blk in st.mhca_blks[1].MHCA_layers]
    assert dps == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])  # linear over sum(num_layers), same in every path
    assert model.cls_head.cls.out_features == 7


# ------------------------------------------------------------------------------------ checkpoints
def test_official_layout_round_trip(tmp_path):
    src = _randomized_small_model()
    official = to_official_layout(src.state_dict())
    assert any(".MHCA_layers.0.factoratt_crpe.crpe.conv_list.2.weight" in k for k in official)
    path = tmp_path / "mpvit_official.pth"
    torch.save(_official_container(official), path)

    model = timm.create_model("mpvit_tiny", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert set(model.state_dict()) == set(src.state_dict()), "our state dict must be the clean (alias-free) one"
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert_close(model(x), src(x), 0.0, what="logits after official-layout load")

    # the filter is idempotent on our own layout, and our own checkpoints load too
    own = src.state_dict()
    assert mpvit.checkpoint_filter_fn(dict(own), model).keys() == own.keys()
    torch.save(own, tmp_path / "ours.pth")
    again = timm.create_model("mpvit_tiny", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "ours.pth")))
    with torch.no_grad():
        assert_close(again.eval()(x), src(x), 0.0, what="logits after own-layout load")

    # features_only and another num_classes drop the classifier and load everything else
    feats = timm.create_model("mpvit_tiny", **SMALL, pretrained=True, features_only=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        ref = src.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(feats(x), ref):
            assert_close(a, b, 0.0, what="stage features")
    head10 = timm.create_model("mpvit_tiny", **SMALL, num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(head10.stem[0].conv.weight, src.stem[0].conv.weight, rtol=0, atol=0)


def test_alias_copies_with_equal_values_load_and_alias_only_checkpoints_load():
    src = _randomized_small_model()
    official = {k: v.clone() for k, v in to_official_layout(src.state_dict()).items()}  # no shared storage
    model = timm.create_model("mpvit_tiny", **SMALL)
    out = mpvit.checkpoint_filter_fn(official, model)
    assert out.keys() == src.state_dict().keys()
    # only the alias copies present (encoder-level keys removed): they are folded onto the encoder keys
    only_alias = {k: v for k, v in official.items() if not (".cpe." in k or ".crpe." in k) or ".MHCA_layers." in k}
    out = mpvit.checkpoint_filter_fn(only_alias, model)
    assert out.keys() == src.state_dict().keys()
    for k, v in src.state_dict().items():
        assert torch.equal(out[k], v), k


def test_disagreeing_alias_copies_fail_loudly(tmp_path):
    src = _randomized_small_model()
    official = {k: v.clone() for k, v in to_official_layout(src.state_dict()).items()}
    bad_key = "mhca_stages.1.mhca_blks.2.MHCA_layers.1.factoratt_crpe.crpe.conv_list.1.weight"
    official[bad_key] += 1e-3
    path = tmp_path / "bad_alias.pth"
    torch.save({"model": official}, path)
    with pytest.raises(CheckpointMismatchError, match=bad_key.replace(".", r"\.")):
        timm.create_model("mpvit_tiny", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


@pytest.mark.parametrize("corruption", ["renamed", "shape", "missing", "missing_features_only"])
def test_mismatching_checkpoint_names_the_key(tmp_path, corruption):
    official = to_official_layout(_randomized_small_model().state_dict())
    key = "mhca_stages.2.mhca_blks.0.MHCA_layers.0.factoratt_crpe.qkv.weight"
    if corruption == "renamed":
        official["mhca_stages.2.mhca_blks.0.MHCA_layers.0.factoratt_crpe.qkv_renamed.weight"] = official.pop(key)
    elif corruption == "shape":
        official[key] = official[key][:-8]
    else:
        del official[key]
    path = tmp_path / f"{corruption}.pth"
    torch.save({"model": official}, path)
    extra = dict(features_only=True) if corruption == "missing_features_only" else {}
    with pytest.raises(CheckpointMismatchError, match=key.replace(".", r"\.")):
        timm.create_model("mpvit_tiny", **SMALL, **extra, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


# ------------------------------------------------------------------------------------ dense math
def _relpos_matrix(kernel, H, W):
    """Dense N x N matrix of a single-channel 'same' zero-padded conv: out[n] = sum_m R[n, m] in[m]."""
    k = kernel.shape[-1]
    r = k // 2
    R = torch.zeros(H * W, H * W, dtype=kernel.dtype)
    for yn in range(H):
        for xn in range(W):
            for ym in range(H):
                for xm in range(W):
                    dy, dx = ym - yn, xm - xn
                    if abs(dy) <= r and abs(dx) <= r:
                        R[yn * W + xn, ym * W + xm] = kernel[dy + r, dx + r]
    return R


def _dense_factor_attn(x, attn, crpe, H, W):
    """Spec 3.1, per head h and batch item, without reshapes of the model code:
    out_h = d^-0.5 * Q_h softmax_N(K_h)^T V_h + Q_h * CRPE_h(V_h), then proj over heads concatenated (h d)."""
    B, N, C = x.shape
    h = attn.num_heads
    d = C // h
    Wqkv, bqkv = attn.qkv.weight, attn.qkv.bias
    # kernel size of every head from the module's split (e.g. {3: 2, 5: 3, 7: 3})
    head_conv = []
    for conv in crpe.conv_list:
        for _ in range(conv.in_channels // d):
            head_conv.append(conv)
    out = torch.zeros(B, N, C, dtype=x.dtype)
    for b in range(B):
        qkv = x[b] @ Wqkv.T + bqkv  # (N, 3C), layout (3, h, d)
        heads = []
        for i in range(h):
            Q = qkv[:, i * d:(i + 1) * d]
            K = qkv[:, C + i * d:C + (i + 1) * d]
            V = qkv[:, 2 * C + i * d:2 * C + (i + 1) * d]
            Ks = torch.exp(K) / torch.exp(K).sum(0, keepdim=True)  # softmax over tokens
            factor = (Q @ Ks.T) @ V * d ** -0.5  # (N, N) un-normalised "attention" times V
            conv = head_conv[i]
            first = sum(c.in_channels for c in crpe.conv_list[:list(crpe.conv_list).index(conv)])
            cv = torch.zeros(N, d, dtype=x.dtype)
            for j in range(d):
                ch = i * d + j - first  # channel inside this conv's group
                cv[:, j] = _relpos_matrix(conv.weight[ch, 0], H, W) @ V[:, j] + conv.bias[ch]
            heads.append(factor + Q * cv)
        out[b] = torch.cat(heads, dim=1) @ attn.proj.weight.T + attn.proj.bias
    return out


def test_factor_attention_with_crpe_matches_dense_formulation():
    torch.manual_seed(0)
    C, heads, H, W = 16, 8, 4, 5
    attn = mpvit.FactorAttnConvRelPosEnc(C, heads).double()
    crpe = mpvit.ConvRelPosEnc(C // heads, heads, {3: 2, 5: 3, 7: 3}).double()
    with torch.no_grad():
        for p in list(attn.parameters()) + list(crpe.parameters()):
            p.normal_(0, 0.5)
    x = torch.randn(2, H * W, C, dtype=torch.float64)
    with torch.no_grad():
        assert_close(attn(x, (H, W), crpe), _dense_factor_attn(x, attn, crpe, H, W), 1e-10, what="factor attn + crpe")


def test_encoder_matches_dense_formulation_with_shared_cpe_crpe():
    """Two blocks of one encoder: the shared CPE (x + DWConv3x3(x)) before every block, pre-norm
    attention and GELU MLP residuals, all from the encoder's single cpe / crpe."""
    torch.manual_seed(0)
    C, H, W = 16, 3, 4
    enc = mpvit.MHCAEncoder(C, num_layers=2, num_heads=8, mlp_ratio=2).double().eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(1, C, H, W, dtype=torch.float64)
    t = x.flatten(2).transpose(1, 2)[0]  # (N, C)
    cpe_w, cpe_b = enc.cpe.proj.weight, enc.cpe.proj.bias
    for blk in enc.MHCA_layers:
        t = t + torch.stack([_relpos_matrix(cpe_w[c, 0], H, W) @ t[:, c] + cpe_b[c] for c in range(C)], 1)
        n1 = F.layer_norm(t, (C,), blk.norm1.weight, blk.norm1.bias, 1e-6)
        t = t + _dense_factor_attn(n1[None], blk.factoratt_crpe, enc.crpe, H, W)[0]
        n2 = F.layer_norm(t, (C,), blk.norm2.weight, blk.norm2.bias, 1e-6)
        t = t + F.gelu(n2 @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    with torch.no_grad():
        assert_close(enc(x), t.T.reshape(1, C, H, W), 1e-10, what="encoder")


# ------------------------------------------------------------------------------------ inputs
def test_arbitrary_sizes_and_input_errors():
    model = _randomized_small_model()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 37, 70), intermediates_only=True)
        assert [tuple(f.shape[2:]) for f in feats] == [(10, 18), (5, 9), (3, 5), (2, 3)]
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 1000)  # no minimum size: 3x3/pad-1 stride-2 convs
        with pytest.raises(ValueError, match="at least 1x1"):
            model(torch.randn(1, 3, 0, 32))
        with pytest.raises(ValueError, match="built for 3 input channels, got 1"):
            model(torch.randn(1, 1, 32, 32))
        with pytest.raises(ValueError, match="4-D"):
            model(torch.randn(3, 32, 32))


def test_grad_checkpointing_uses_torch_checkpoint(monkeypatch):
    model = _randomized_small_model().train()
    x = torch.randn(2, 3, 32, 32)
    ref = copy.deepcopy(model)
    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    ref(x).sum().backward()
    assert len(calls) == sum(len(e.MHCA_layers) for s in model.mhca_stages for e in s.mhca_blks)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert_close(p.grad, q.grad, 1e-5, what=n)
