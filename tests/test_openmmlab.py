"""The OpenMMLab layer (openmmlab/): backbone adapter and its registration, checkpoints (backbone and whole
models, one strict rule), freezing, the launch-time set-up, and that ``models`` stays free of OpenMMLab."""
import pytest
import timm
import torch
from torch import nn

pytest.importorskip("mmengine")
from mmengine.runner import load_checkpoint as mm_load_checkpoint  # noqa: E402

import models  # noqa: E402
from openmmlab.backbone import VisionBackbone  # noqa: E402
from openmmlab.checkpoint import load_full_checkpoint, mmengine_checkpoint_globals  # noqa: E402
from test_p2t import to_official  # noqa: E402  (our p2t keys -> the official ones, written in that test)

NAME = "p2t_tiny"
X = torch.randn(1, 3, 96, 112)


def _classifier(seed=0):
    torch.manual_seed(seed)
    model = timm.create_model(NAME, num_classes=1000).eval()
    with torch.no_grad():  # move away from the init so that a skipped load cannot pass
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _expected(model, x=X):
    with torch.no_grad():
        return model.forward_intermediates(x, indices=(0, 1, 2, 3), intermediates_only=True)


def _assert_same(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        err = (u - v).abs()
        assert u.shape == v.shape and err.max() <= 1e-5, f"stage {i}: max {err.max():.3g} mean {err.mean():.3g}"


@pytest.mark.parametrize("package", ["mmdet", "mmseg"])
def test_registered_and_equal_to_timm_features(package):
    registry = pytest.importorskip(f"{package}.registry").MODELS
    backbone = registry.build(dict(type="VisionBackbone", model_name=NAME, out_indices=(1, 3))).eval()
    ref = timm.create_model(NAME, features_only=True, out_indices=(1, 3)).eval()
    ref.model.load_state_dict(backbone.model.state_dict())
    with torch.no_grad():
        out = backbone(X)
    assert isinstance(out, tuple) and backbone.channels == [96, 384] == [o.shape[1] for o in out]
    _assert_same(out, ref(X))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown model_name 'p2t_tinny'"):
        VisionBackbone("p2t_tinny")
    with pytest.raises(ValueError, match="frozen_stages=7"):
        VisionBackbone(NAME, frozen_stages=7)
    with pytest.raises(ValueError, match="Pretrained"):
        VisionBackbone(NAME, init_cfg=dict(type="Kaiming"))


@pytest.mark.parametrize("layout", ["ours", "official", "official_ema"])
def test_init_cfg_loads_classification_checkpoints(tmp_path, layout):
    cls = _classifier()
    sd = cls.state_dict()
    if layout == "ours":  # what classification/main.py writes
        ckpt, key = {"model": sd, "epoch": 3}, None
    elif layout == "official":
        ckpt, key = {"model": {f"module.{k}": v for k, v in to_official(sd).items()}}, None
    else:
        ckpt, key = {"model": {}, "model_ema": to_official(sd)}, "model_ema"
    path = tmp_path / "cls.pth"
    torch.save(ckpt, path)
    backbone = VisionBackbone(NAME, init_cfg=dict(type="Pretrained", checkpoint=str(path), checkpoint_key=key))
    backbone.init_weights()
    with torch.no_grad():
        _assert_same(backbone.eval()(X), _expected(cls))


def test_init_cfg_reports_mismatching_keys(tmp_path):
    sd = to_official(_classifier().state_dict())
    sd["block1.0.attn.q.0.weightt"] = sd.pop("block1.0.attn.q.0.weight")
    torch.save({"model": sd}, tmp_path / "bad.pth")
    backbone = VisionBackbone(NAME, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "bad.pth")))
    with pytest.raises(models.CheckpointMismatchError, match=r"(?s)missing keys.*stages\.0\.blocks\.0\.attn\.q"):
        backbone.init_weights()


class _Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = VisionBackbone(NAME)
        self.neck = nn.Conv2d(512, 8, 1)


def _load(loader, model, path):
    if loader == "mmengine":  # mmengine's own loader: the backbone's state-dict pre-hook maps the keys
        mm_load_checkpoint(model, str(path), strict=True)
        return None
    with mmengine_checkpoint_globals(str(path)):
        return load_full_checkpoint(model, torch.load(path, weights_only=True), source=str(path))


@pytest.mark.parametrize("loader", ["mmengine", "strict"])
def test_full_checkpoints_load_in_official_and_our_layout(tmp_path, loader):
    cls = _classifier()
    neck = {"neck.weight": torch.randn(8, 512, 1, 1), "neck.bias": torch.randn(8)}
    # the official P2T segmentation backbone keeps its unused ImageNet classifier: dropped on load
    official = {"state_dict": {**{f"backbone.{k}": v for k, v in to_official(cls.state_dict()).items()}, **neck},
                "meta": {"mmdet_version": "3.3.0"}}
    torch.save(official, tmp_path / "official_det.pth")
    det = _Detector()
    dropped = _load(loader, det, tmp_path / "official_det.pth")
    assert dropped in (None, ["backbone.head.bias", "backbone.head.weight"])
    _assert_same(det.backbone.eval()(X), _expected(cls))
    assert torch.equal(det.neck.bias, neck["neck.bias"])

    # our own layout (backbone.model.<our key>) round trips unchanged, and a backbone can be taken out of it
    torch.save({"state_dict": det.state_dict()}, tmp_path / "ours_det.pth")
    det2 = _Detector()
    assert _load(loader, det2, tmp_path / "ours_det.pth") in (None, [])
    _assert_same(det2.backbone.eval()(X), _expected(cls))
    b = VisionBackbone(NAME, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "ours_det.pth"),
                                           prefix="backbone."))
    b.init_weights()
    _assert_same(b.eval()(X), _expected(cls))


@pytest.mark.parametrize("layout", ["ours", "official"])
def test_strict_loader_names_every_key_that_does_not_fit(layout):
    """One rule for whole models: a missing, unexpected or mis-shaped key raises, naming it, before anything
    is loaded; only an official backbone's unused classifier is dropped."""
    state = _Detector().state_dict()
    if layout == "official":
        backbone = {k[len("backbone.model."):]: state.pop(k) for k in list(state) if k.startswith("backbone.")}
        state.update({f"backbone.{k}": v for k, v in to_official(backbone).items()})
    state.pop("neck.bias")
    state["neck.extra"] = torch.zeros(1)
    state["neck.weight"] = torch.zeros(8, 512, 3, 3)
    det = _Detector()
    before = {k: v.clone() for k, v in det.state_dict().items()}
    with pytest.raises(models.CheckpointMismatchError,
                       match=r"(?s)missing keys \(1\): neck\.bias.*unexpected keys \(1\): neck\.extra.*neck\.weight"):
        load_full_checkpoint(det, {"state_dict": state, "meta": {}}, source="ckpt.pth")
    assert all(torch.equal(v, before[k]) for k, v in det.state_dict().items()), "a failed load changed weights"


def test_models_holds_no_openmmlab_code():
    """``models`` is torch + timm only: none of its files imports an OpenMMLab package."""
    import re
    from pathlib import Path

    pattern = re.compile(r"^\s*(from|import)\s+(mmcv|mmdet|mmseg|mmengine|openmmlab)\b", re.M)
    offenders = [p.name for p in Path(models.__file__).parent.glob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders


def test_frozen_stages_and_norm_eval():
    backbone = VisionBackbone(NAME, frozen_stages=1, norm_eval=True).train()
    frozen = {n for n, p in backbone.model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("stages.0.") for n in frozen)
    assert all(not p.requires_grad for n, p in backbone.model.named_parameters() if n.startswith("stages.0."))
    assert all(not m.training for m in backbone.model.stages[0].modules())
    assert backbone.model.stages[1].training
    sum(o.mean() for o in backbone(X)).backward()
    assert all(p.grad is None for n, p in backbone.model.named_parameters() if n in frozen)
    assert all(p.grad is not None for n, p in backbone.model.named_parameters() if n.startswith("stages.3."))


@pytest.mark.parametrize("with_cp", [True, "selective"])
def test_with_cp_gives_the_same_gradients(with_cp):
    torch.manual_seed(0)
    plain = VisionBackbone(NAME, out_indices=(3,), drop_path_rate=0.0).train()
    cp = VisionBackbone(NAME, out_indices=(3,), drop_path_rate=0.0, with_cp=with_cp).train()
    assert {m.grad_checkpointing for m in cp.modules() if hasattr(m, "grad_checkpointing")} == {with_cp}
    cp.load_state_dict(plain.state_dict())
    grads = []
    for b in (plain, cp):
        b(X)[0].square().mean().backward()
        grads.append({n: p.grad for n, p in b.named_parameters()})
    for n, g in grads[0].items():
        assert torch.allclose(g, grads[1][n], atol=1e-6), n
    with pytest.raises(ValueError,
                       match=r"VisionBackbone: with_cp must be one of \(False, True, 'selective'\), got 'full'"):
        VisionBackbone(NAME, out_indices=(3,), with_cp="full")


def test_reinit_keeps_fresh_weights_only_where_named_and_mismatched(tmp_path):
    """PaCa downstream recipe: 200 clusters on top of a 100-cluster ImageNet checkpoint."""
    name = "pacavit_tiny_p2cconv_100_0"
    torch.manual_seed(0)
    cls = timm.create_model(name)
    torch.save({"model": cls.state_dict()}, tmp_path / "paca.pth")
    kwargs = dict(num_clusters=(200, 200, 200, 0), out_indices=(3,))
    strict = VisionBackbone(name, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "paca.pth")), **kwargs)
    with pytest.raises(models.CheckpointMismatchError, match=r"stage1\.0\.attn\.clustering\.clustering\.4\.weight"):
        strict.init_weights()
    b = VisionBackbone(name, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "paca.pth"),
                                           reinit=[r"clustering\.\d+\.weight$"]), **kwargs)
    fresh = {k: v.clone() for k, v in b.model.state_dict().items()}
    b.init_weights()
    src, got = cls.state_dict(), b.model.state_dict()
    kept = {k for k in got if k in src and src[k].shape != got[k].shape}
    assert kept == {f"stage{i}.0.attn.clustering.clustering.4.weight" for i in (1, 2, 3)}
    for k, v in got.items():
        assert torch.equal(v, fresh[k] if k in kept else src[k]), k


# ------------------------------------------------------------------------------- launch-time set-up
def test_setup_device_on_this_machine(monkeypatch):
    from mmengine.config import Config

    from openmmlab.launch import resolve_launcher, setup_device

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_launcher(None) == "none"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_launcher(None) == "pytorch"
    with pytest.raises(ValueError, match="launcher"):
        resolve_launcher("torchrun")
    cfg = Config(dict(model=dict(type="X", head=dict(norm_cfg=dict(type="SyncBN")), necks=[dict(norm_cfg=dict(
        type="SyncBN"))]), sync_bn="torch"))
    device = setup_device(cfg, "none")
    assert cfg.env_cfg.dist_cfg.backend == ("nccl" if torch.cuda.is_available() else "gloo")
    if device == "cpu":  # SyncBN exists only on CUDA: BN, and no mmengine sync_bn conversion
        assert cfg.model.head.norm_cfg.type == "BN" and cfg.model.necks[0].norm_cfg.type == "BN"
        assert cfg.sync_bn is None
        with pytest.raises(RuntimeError, match="torchrun"):
            setup_device(cfg, "slurm")


def _one_process_group_env(monkeypatch) -> None:
    """The environment torchrun gives a one-process job, on a free port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
        monkeypatch.setenv(k, v)


def test_process_group_scope_destroys_the_group_created_inside(monkeypatch):
    """The tools destroy the process group they created when the run ends (left to interpreter shutdown, a gloo
    rank of a finished 2-process run aborted now and then); never a caller's group, and not after an exception
    (the other ranks may still wait in a collective)."""
    import torch.distributed as dist

    from openmmlab.launch import process_group_scope

    _one_process_group_env(monkeypatch)
    with process_group_scope():
        dist.init_process_group("gloo")
    assert not dist.is_initialized()
    _one_process_group_env(monkeypatch)
    dist.init_process_group("gloo")  # the caller's
    try:
        with process_group_scope():
            pass
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
    _one_process_group_env(monkeypatch)
    try:
        with pytest.raises(RuntimeError, match="run failed"):
            with process_group_scope():
                dist.init_process_group("gloo")
                raise RuntimeError("run failed")
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU set-up of a torchrun process")
def test_cpu_ddp_syncs_buffers_after_every_step(monkeypatch):
    """On CPU the DDP wrapper gets no device ids and no buffer broadcast of its own; BroadcastBuffersHook gives
    every rank rank 0's buffers after each step (a one-process gloo group here: the broadcast runs, and every
    buffer, of every dtype, comes back unchanged)."""
    import torch.distributed as dist
    from mmengine.config import Config

    from openmmlab.launch import BroadcastBuffersHook, setup_device

    _one_process_group_env(monkeypatch)
    cfg = Config(dict(model=dict(type="X")))
    try:
        assert setup_device(cfg, "pytorch") == "cpu" and dist.is_initialized()
        assert cfg.model_wrapper_cfg.device_ids is None and cfg.model_wrapper_cfg.broadcast_buffers is False
        assert cfg.custom_hooks == [dict(type="BroadcastBuffersHook")]
        bn = nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm2d(2))
        for buf in bn.buffers():
            buf.copy_(torch.randint(1, 9, buf.shape))
        before = [b.clone() for b in bn.buffers()]

        class _Runner:
            model = bn

        BroadcastBuffersHook().after_train_iter(_Runner(), 0)
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(bn.buffers(), before))
    finally:
        dist.destroy_process_group()


def test_mmengine_checkpoint_globals(tmp_path):
    import argparse

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    hub = HistoryBuffer()
    hub.update(1.5)
    path = str(tmp_path / "epoch_1.pth")
    torch.save(dict(state_dict=dict(w=torch.ones(2)), message_hub=dict(log=hub, arr=np.arange(3))), path)
    with mmengine_checkpoint_globals(path):
        ckpt = torch.load(path)
    assert ckpt["message_hub"]["log"].current() == 1.5 and ckpt["message_hub"]["arr"].tolist() == [0, 1, 2]
    bad = str(tmp_path / "bad.pth")
    torch.save(dict(state_dict=dict(w=torch.ones(2)), extra=argparse.Namespace(a=1)), bad)
    with pytest.raises(RuntimeError, match="Namespace"):
        with mmengine_checkpoint_globals(bad):
            pass
    with pytest.raises(FileNotFoundError):
        with mmengine_checkpoint_globals(str(tmp_path / "missing.pth")):
            pass
