"""Segmentation on mmseg 1.x: every config, the PaCa head's math, checkpoints, and train -> test round trips.

- every config under configs/segmentation builds (model + optimiser with its parameter-wise rules) and its
  literal in_channels agree with the backbone; one real training step (backward, optimiser step) on a tiny
  synthetic batch for one config per backbone family (and per PaCa clusterer) and the smoke configs;
- ``PaCaSegHead`` equals an independent dense formulation of the spec's math (logits and both losses), and
  its parameter names are the official checkpoint's;
- classification checkpoints load through ``init_cfg`` and official-layout segmentor checkpoints through
  the strict loader of whole models (``openmmlab.checkpoint``);
- the embedded dataset and P2T's AlignResize.
The scripts (flags, dist / slurm launchers, the 2-process train -> test round trips) are tested for both task
folders at once in ``test_openmmlab_tools.py``.
"""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("mmseg")
from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

import openmmlab.config_table  # noqa: E402  (importing openmmlab registers VisionBackbone, PaCaSegHead, AlignResize)
from models import CheckpointMismatchError  # noqa: E402
from openmmlab.checkpoint import load_full_checkpoint  # noqa: E402
from openmmlab.launch import replace_sync_bn  # noqa: E402
from segmentation import config_table, embedded_data  # noqa: E402
from segmentation.config_table import OURS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs" / "segmentation"
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.py") if "_base_" not in p.parts)
# one training step per backbone family (x head for PaCa-ViT's clusterers); the others only build: they differ
# from these in sizes, cluster counts or the dataset
TRAIN_STEP = [
    "ppma/upernet_ppma-tiny_8xb2-160k_ade20k-512x512.py",
    "p2t/fpn_p2t-tiny_8xb2-80k_ade20k-512x512.py",
    "pacavit/pacahead_pacavit-tiny-p2cconv-100-0_8xb2-160k_ade20k-512x512.py",
    "pacavit/pacahead_pacavit-small-p2cmlp-100-0_8xb2-160k_ade20k-512x512.py",
    "pacavit/pacahead_pacavit-convmixer-small-100_8xb2-160k_ade20k-512x512.py",
    "mpvit/upernet_mpvit-small_8xb2-160k_ade20k-512x512.py",
    "spatial_mamba/upernet_spatial-mamba-tiny_8xb2-160k_ade20k-512x512.py",
    "smoke/upernet_p2t_smoke.py",
    "smoke/fpn_p2t_smoke.py",
    "smoke/pacahead_pacavit_smoke.py",
]


def _rel(p: Path) -> str:
    return p.relative_to(CONFIG_DIR).as_posix()


def _cpu_config(path) -> Config:
    cfg = Config.fromfile(str(path))
    replace_sync_bn(cfg.model)
    cfg.model.backbone.pop("init_cfg", None)  # the ImageNet checkpoints are not in the test environment
    return cfg


def _batch(size: int, num_classes: int, n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    meta = dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
    samples = [SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, num_classes, (1, size, size), generator=g)),
                             metainfo=meta) for _ in range(n)]
    images = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(n)]
    return dict(inputs=images, data_samples=samples)


def test_config_set_is_complete():
    names = {_rel(p) for p in CONFIGS}
    expected = (
        [f"ppma/upernet_ppma-{s}_8xb2-160k_ade20k-512x512.py" for s in ("tiny", "small", "base")]
        + [f"ppma/upernet_ppma-{s}_8xb1-160k_cityscapes-1024x1024.py" for s in ("tiny", "small", "base")]
        + [f"p2t/fpn_p2t-{s}_8xb2-80k_ade20k-512x512.py" for s in ("tiny", "small", "base", "large")]
        + [f"pacavit/upernet_pacavit-{s}-p2cconv-100-0_8xb2-160k_ade20k-512x512.py" for s in ("tiny", "small", "base")]
        + [f"pacavit/pacahead_pacavit-{v}_8xb2-160k_ade20k-512x512.py" for v in (
            "tiny-p2cconv-100-0", "small-p2cconv-100-0", "base-p2cconv-100-0", "small-p2cmlp-100-0",
            "convmixer-small-100", "convmixer-base-100", "small-p2cconv-2-0", "small-p2cconv-49-0",
            "small-p2cconv-49-100", "small-p2cconv-100-49", "small-p2cconv-100", "small-p2cconv-100-blockwise")]
        + [f"mpvit/upernet_mpvit-{s}_8xb2-160k_ade20k-512x512.py" for s in ("small", "base")]
        + [f"spatial_mamba/upernet_spatial-mamba-{s}_8xb2-160k_ade20k-512x512.py" for s in ("tiny", "small", "base")]
        + [f"smoke/{n}_smoke.py" for n in ("upernet_p2t", "fpn_p2t", "pacahead_pacavit")]
    )
    assert names == set(expected)
    assert [p for p in CONFIGS if "smoke" not in p.parts] == sorted(config_table.SPEC.row_configs())
    for path in config_table.SPEC.row_configs():  # every row states its paper numbers and ours
        row = config_table.SPEC.parse(path)
        assert re.fullmatch(r"\d+\.\d+", row["mIoU (ss)"]) and re.fullmatch(r"[\d.]+ / [\d.]+", row[OURS]), path
    assert openmmlab.config_table.main(config_table.SPEC, ["--check"]) == 0, "the config tables / metafile are stale"


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_config_builds_and_trains(path):
    """Every config: model + optimiser (parameter-wise rules on the real names), literal in_channels equal to
    the backbone's, the parameter count its paper-row block gives as ours; for one config per backbone family
    x head (TRAIN_STEP) also one real training step."""
    init_default_scope("mmseg")
    cfg = _cpu_config(path)
    size = 96 if cfg.model.backbone.model_name.startswith("p2t") else 64  # P2T's pyramid pools need > 64 px
    cfg.model.data_preprocessor.size = (size, size)
    model = MODELS.build(cfg.model).train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    channels = model.backbone.channels
    head = cfg.model.decode_head
    if "neck" in cfg.model:
        assert list(cfg.model.neck.in_channels) == channels
    else:
        assert list(head.in_channels) == channels
    if "auxiliary_head" in cfg.model:
        aux = cfg.model.auxiliary_head
        assert aux.in_channels == channels[aux.in_index]
    assert head.num_classes == (19 if "cityscapes" in path.name else 4 if "smoke" in path.parts else 150)
    if "smoke" not in path.parts:
        ours = float(config_table.SPEC.parse(path)[OURS].split(" / ")[0])
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == ours, path.name
    if _rel(path) not in TRAIN_STEP:
        return

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log = model.train_step(_batch(size, head.num_classes), optim_wrapper)
    assert torch.isfinite(log["loss"])
    assert "decode.loss_ce" in log
    if "auxiliary_head" in cfg.model:
        assert "aux.loss_ce" in log
    if head.type == "PaCaSegHead":
        assert "decode.paca.loss_ce" in log
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.startswith("backbone.") for n in moved) and any(n.startswith("decode_head.") for n in moved)


# ---------------------------------------------------------------------------------------------- PaCa head
OFFICIAL_HEAD_KEYS = (
    [f"convs.{i}.{m}" for i in range(4) for m in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                                   "bn.running_var", "bn.num_batches_tracked")]
    + [f"{n}.{m}" for n in ("q.0", "clustering.0", "proj") for m in (
        "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked")]
    + ["clustering.1.weight", "clustering.1.bias", "conv_seg.weight", "conv_seg.bias"]
    + [f"{n}.{m}" for n in ("k", "v") for m in ("0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean",
                                               "2.running_var", "2.num_batches_tracked")]
)


def _paca_head(norm="BN", in_channels=(8, 12, 16, 20), channels=6, num_classes=5):
    init_default_scope("mmseg")
    head = MODELS.build(dict(
        type="PaCaSegHead", in_channels=list(in_channels), in_index=[0, 1, 2, 3], channels=channels,
        num_classes=num_classes, dropout_ratio=0.1, norm_cfg=dict(type=norm), align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", avg_non_ignore=True, loss_weight=1.0),
        aux_loss_decode=dict(type="CrossEntropyLoss", avg_non_ignore=True, loss_weight=0.4)))
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for name, buf in head.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in head.named_parameters():
            if ".bn." in f".{name}" or re.search(r"^[kv]\.2\.", name):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return head.eval()


def _dense_paca(sd, feats, eps=1e-5):
    """The spec's math (p2t_paca_mpvit.md 2.5), one formula per step, from the raw parameters (eval-mode BN)."""
    def bn(x, prefix, dim):  # x: channels on axis `dim`
        shape = [1] * x.dim()
        shape[dim] = -1
        g, b = sd[f"{prefix}.weight"].view(shape), sd[f"{prefix}.bias"].view(shape)
        m, v = sd[f"{prefix}.running_mean"].view(shape), sd[f"{prefix}.running_var"].view(shape)
        return (x - m) / torch.sqrt(v + eps) * g + b

    def conv_bn_relu(x, prefix):  # 1x1 conv (no bias) + BN + ReLU on (B, C, H, W)
        w = sd[f"{prefix}.conv.weight"][:, :, 0, 0]
        return torch.relu(bn(torch.einsum("oc,bchw->bohw", w, x), f"{prefix}.bn", 1))

    h, w = feats[0].shape[2:]
    levels = [F.interpolate(conv_bn_relu(f, f"convs.{i}"), size=(h, w), mode="bilinear", align_corners=False)
              for i, f in enumerate(feats)]
    X = torch.cat(levels, dim=1)                                              # B, 4Cd, H, W
    B, C4 = X.shape[:2]
    Xf = X.reshape(B, C4, h * w)                                              # B, 4Cd, N
    q = conv_bn_relu(X, "q.0").reshape(B, -1, h * w)                          # B, Cd, N
    S = torch.einsum("kc,bchw->bkhw", sd["clustering.1.weight"][:, :, 0, 0], conv_bn_relu(X, "clustering.0"))
    S = S + sd["clustering.1.bias"].view(1, -1, 1, 1)                         # B, K, H, W
    Sf = S.reshape(B, S.shape[1], h * w)
    Z = torch.exp(Sf - Sf.amax(-1, keepdim=True))
    Z = Z / Z.sum(-1, keepdim=True)                                           # softmax over the N pixels
    P = torch.einsum("bkn,bcn->bkc", Z, Xf)                                   # B, K, 4Cd
    k = torch.relu(bn(torch.einsum("bkc,dc->bkd", P, sd["k.0.weight"]) + sd["k.0.bias"], "k.2", 2))
    v = torch.relu(bn(torch.einsum("bkc,dc->bkd", P, sd["v.0.weight"]) + sd["v.0.bias"], "v.2", 2))
    logits = torch.einsum("bdn,bkd->bnk", q, k)                               # no 1/sqrt(d), one head
    A = torch.exp(logits - logits.amax(-1, keepdim=True))
    A = A / A.sum(-1, keepdim=True)                                           # softmax over the K clusters
    O = torch.einsum("bnk,bkd->bdn", A, v).reshape(B, -1, h, w)
    O = conv_bn_relu(O, "proj")
    out = torch.einsum("kc,bchw->bkhw", sd["conv_seg.weight"][:, :, 0, 0], O) + sd["conv_seg.bias"].view(1, -1, 1, 1)
    return out, S


def test_paca_head_keys_are_the_official_ones():
    assert set(_paca_head().state_dict()) == set(OFFICIAL_HEAD_KEYS)
    head = _paca_head(norm="SyncBN")
    assert isinstance(head.k[2], torch.nn.SyncBatchNorm) and set(head.state_dict()) == set(OFFICIAL_HEAD_KEYS)


def test_paca_head_matches_dense_formulation():
    torch.manual_seed(0)
    head = _paca_head()
    feats = [torch.randn(2, c, 16 // 2 ** i, 20 // 2 ** i) for i, c in enumerate((8, 12, 16, 20))]
    ref_logits, ref_clusters = _dense_paca({k: v.double() for k, v in head.state_dict().items()},
                                           [f.double() for f in feats])
    with torch.no_grad():
        logits = head(feats)
    assert logits.shape == (2, 5, 16, 20)
    assert torch.allclose(logits.double(), ref_logits, atol=1e-5, rtol=1e-4), (logits.double() - ref_logits).abs().max()

    # losses: CE on the logits (weight 1) and on the cluster logits S (weight 0.4), both resized to the labels
    labels = torch.randint(0, 5, (2, 1, 32, 40))
    labels[:, :, :4] = 255  # ignored
    samples = [SegDataSample(gt_sem_seg=PixelData(data=lab)) for lab in labels]
    with torch.no_grad():
        losses = head.loss(feats, samples, None)

    def ce(x):
        x = F.interpolate(x, size=(32, 40), mode="bilinear", align_corners=False)
        return F.cross_entropy(x, labels[:, 0], ignore_index=255)

    assert torch.allclose(losses["loss_ce"].double(), ce(ref_logits), atol=1e-5)
    assert torch.allclose(losses["paca.loss_ce"].double(), 0.4 * ce(ref_clusters), atol=1e-5)
    assert "paca.acc_seg" in losses and "acc_seg" in losses


def test_paca_head_rejects_bad_arguments():
    with pytest.raises(ValueError, match="input_transform"):
        MODELS.build(dict(type="PaCaSegHead", in_channels=[8, 8], in_index=[0, 1], channels=4, num_classes=3,
                          input_transform="resize_concat"))
    with pytest.raises(ValueError, match="norm_cfg"):
        _paca_head(norm="LN")


# ------------------------------------------------------------------------------------------ checkpoints
def _smoke_model(name):
    init_default_scope("mmseg")
    cfg = _cpu_config(CONFIG_DIR / "smoke" / name)
    return cfg, MODELS.build(cfg.model)


def test_classification_checkpoint_loads_through_init_cfg(tmp_path):
    import timm

    cfg, _ = _smoke_model("pacahead_pacavit_smoke.py")
    kwargs = {k: v for k, v in cfg.model.backbone.items() if k not in ("type", "model_name", "out_indices")}
    classifier = timm.create_model(cfg.model.backbone.model_name, num_classes=1000, **kwargs)
    with torch.no_grad():
        for p in classifier.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save({"model": classifier.state_dict()}, tmp_path / "cls.pth")
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(tmp_path / "cls.pth"))
    model = MODELS.build(cfg.model)
    model.init_weights()
    own, src = model.backbone.model.state_dict(), classifier.state_dict()
    assert len(own) > 10 and not any(k.startswith("head.") for k in own)
    for k, v in own.items():
        assert torch.equal(v, src[k]), k

    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        MODELS.build(cfg.model).init_weights()


def test_official_layout_segmentor_checkpoint_loads_strictly():
    from test_p2t import to_official  # our P2T keys -> the official ones (written in that test)

    _, source = _smoke_model("upernet_p2t_smoke.py")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = source.state_dict()
    backbone = {k[len("backbone.model."):]: v for k, v in ours.items() if k.startswith("backbone.model.")}
    assert backbone and len(backbone) == sum(k.startswith("backbone.") for k in ours)
    official = {f"backbone.{k}": v for k, v in to_official(backbone).items()}
    assert set(official) != {f"backbone.{k}" for k in backbone}  # the layouts really differ
    official.update({k: v for k, v in ours.items() if not k.startswith("backbone.")})
    # the official segmentor's backbone kept its (unused) 1000-way classifier
    official.update({"backbone.head.weight": torch.randn(1000, 64), "backbone.head.bias": torch.randn(1000)})
    _, target = _smoke_model("upernet_p2t_smoke.py")
    dropped = load_full_checkpoint(target, {"state_dict": official, "meta": {}})
    assert dropped == ["backbone.head.bias", "backbone.head.weight"]
    x = torch.randn(1, 3, 96, 128)
    source.eval(), target.eval()
    with torch.no_grad():
        assert torch.equal(source(x, mode="tensor"), target(x, mode="tensor"))

    broken = dict(official)
    broken.pop("decode_head.conv_seg.weight")
    broken["decode_head.extra.weight"] = torch.zeros(1)  # a stray key is an error, unlike the classifier
    with pytest.raises(CheckpointMismatchError,
                       match=r"missing keys \(1\): decode_head.conv_seg.weight[\s\S]*extra.weight"):
        load_full_checkpoint(target, {"state_dict": broken})


# ------------------------------------------------------------------------------------------ data, scripts
def test_embedded_data_is_deterministic_and_complete(tmp_path):
    import cv2
    import numpy as np

    a = embedded_data.generate(tmp_path / "a" / "embedded_ade")
    b = embedded_data.generate(tmp_path / "b" / "embedded_ade")
    for split, n in embedded_data.SPLITS.items():
        names = sorted(p.name for p in (a / "annotations" / split).iterdir())
        assert len(names) == n and len(list((a / "images" / split).iterdir())) == n
        for name in names:
            la = cv2.imread(str(a / "annotations" / split / name), cv2.IMREAD_UNCHANGED)
            lb = cv2.imread(str(b / "annotations" / split / name), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(la, lb) and 128 <= min(la.shape) and max(la.shape) <= 256
            assert la.max() <= len(embedded_data.CLASSES)
    labels = np.concatenate([cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ravel()
                             for p in (a / "annotations" / "training").iterdir()])
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}  # every class and the unlabelled value
    assert embedded_data.generate(a) == a  # already complete: nothing to do
    (tmp_path / "c" / "embedded_ade").mkdir(parents=True)
    (tmp_path / "c" / "embedded_ade" / "stray").write_text("x")
    with pytest.raises(FileExistsError, match="not a complete"):
        embedded_data.generate(tmp_path / "c" / "embedded_ade")


def test_align_resize_stretches_to_multiples_of_32():
    import numpy as np

    from mmseg.registry import TRANSFORMS

    img = np.random.default_rng(0).integers(0, 255, (300, 450, 3), dtype=np.uint8)
    seg = np.random.default_rng(1).integers(0, 5, (300, 450), dtype=np.uint8)
    t = TRANSFORMS.build(dict(type="AlignResize", scale=(2048, 512), keep_ratio=True, size_divisor=32))
    out = t(dict(img=img, gt_seg_map=seg, ori_shape=img.shape[:2], seg_fields=["gt_seg_map"]))
    # keep-ratio resize to fit (2048, 512): 300x450 -> 512x768 (already aligned: nothing stretched)
    assert out["img"].shape[:2] == (512, 768) and out["gt_seg_map"].shape == (512, 768)
    out = t(dict(img=img[:290], gt_seg_map=seg[:290], ori_shape=(290, 450), seg_fields=["gt_seg_map"]))
    # 290x450 -> 512x794 (keep ratio) -> 512x800 (next multiple of 32); scale factors follow
    assert out["img"].shape[:2] == (512, 800) and out["img_shape"] == (512, 800)
    assert out["gt_seg_map"].shape == (512, 800) and set(np.unique(out["gt_seg_map"])) <= set(range(5))
    assert np.allclose(out["scale_factor"], (800 / 450, 512 / 290))
