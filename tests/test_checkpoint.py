"""The shared checkpoint loader: container keys, prefixes, classifier handling and loud mismatches."""
import argparse
import fractions

import pytest
import torch
from torch import nn

from models import CheckpointMismatchError, load_checkpoint
from models._checkpoint import extract_state_dict, use_checkpoint_key


class TinyNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.num_classes = num_classes
        self.head = nn.Linear(4, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = dict(classifier="head", num_classes=10)

    def forward(self, x):
        return self.head(self.norm(self.stem(x)).mean((2, 3)))


def _rename_official(state, model):
    """A filter in the style of the families': official 'patch_embed.*' -> our 'stem.*'."""
    return {k.replace("patch_embed.", "stem."): v for k, v in state.items()}


def _official_state(src):
    return {k.replace("stem.", "patch_embed."): v for k, v in src.state_dict().items()}


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("container", ["model", "models", "state_dict", "model_ema", None])
def test_loads_every_official_container_layout(tmp_path, container):
    src = TinyNet()
    state = _official_state(src)
    ckpt = state if container is None else {container: state, "epoch": 3}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    dst = TinyNet()
    load_checkpoint(dst, path, _rename_official)
    assert _same(src, dst)


def test_prefers_the_evaluated_model_over_ema_and_honours_checkpoint_key(tmp_path):
    model_w, ema_w = TinyNet(), TinyNet()
    path = tmp_path / "ckpt.pth"
    torch.save({"model_ema": ema_w.state_dict(), "model": model_w.state_dict()}, path)
    dst = TinyNet()
    load_checkpoint(dst, path)
    assert _same(dst, model_w)
    load_checkpoint(dst, path, checkpoint_key="model_ema")
    assert _same(dst, ema_w)
    with use_checkpoint_key("model_ema"):
        load_checkpoint(dst, path)
    assert _same(dst, ema_w)


def test_timm_create_model_takes_the_checkpoint_key_from_the_overlay(tmp_path):
    import timm

    src = [timm.create_model("mpvit_tiny") for _ in range(2)]
    path = tmp_path / "mpvit.pth"
    torch.save({"model": src[0].state_dict(), "model_ema": src[1].state_dict()}, path)
    for key, expected in ((None, src[0]), ("model_ema", src[1])):
        overlay = dict(file=str(path)) if key is None else dict(file=str(path), checkpoint_key=key)
        model = timm.create_model("mpvit_tiny", pretrained=True, pretrained_cfg_overlay=overlay)
        assert _same(model, expected), key


def test_training_checkpoint_with_args_namespace_and_module_prefix(tmp_path):
    src = TinyNet()
    path = tmp_path / "ckpt.pth"
    state = {"module." + k: v for k, v in src.state_dict().items()}
    torch.save({"model": state, "args": argparse.Namespace(lr=1e-3), "epoch": 299}, path)
    dst = TinyNet()
    load_checkpoint(dst, path)
    assert _same(src, dst)


def test_classifier_dropped_for_other_num_classes_or_no_head(tmp_path):
    src = TinyNet(num_classes=10)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": src.state_dict()}, path)
    for num_classes in (5, 0):
        dst = TinyNet(num_classes=num_classes)
        head_before = {k: v.clone() for k, v in dst.head.state_dict().items()}
        load_checkpoint(dst, path)
        assert torch.equal(dst.stem.weight, src.stem.weight)
        for k, v in dst.head.state_dict().items():  # the new head keeps its own initialisation
            assert torch.equal(v, head_before[k])


def test_head_of_the_wrong_size_is_a_mismatch_for_a_model_built_for_the_pretrained_classes(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": TinyNet(num_classes=5).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match=r"head.weight: checkpoint \(5, 4\) vs model \(10, 4\)"):
        load_checkpoint(TinyNet(num_classes=10), path)


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (lambda s: s.pop("stem.weight"), "missing keys (1): stem.weight"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "unexpected keys (1): extra.weight"),
        (lambda s: s.__setitem__("norm.weight", torch.zeros(5)), "norm.weight: checkpoint (5,) vs model (4,)"),
    ],
)
def test_mismatching_checkpoint_fails_loudly_naming_the_keys(tmp_path, corrupt, expected):
    state = TinyNet().state_dict()
    corrupt(state)
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    dst = TinyNet()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(dst, path)
    assert expected in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in dst.state_dict().items()), "partial load before the error"


def test_unreadable_or_unknown_containers_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(TinyNet(), tmp_path / "nope.pth")
    with pytest.raises(CheckpointMismatchError, match="no state dict in checkpoint"):
        extract_state_dict({"epoch": 1, "optimizer": {}})
    with pytest.raises(CheckpointMismatchError, match="no key 'ema'"):
        extract_state_dict({"model": {}}, key="ema")

    # an arbitrary pickled object is refused (weights-only: no code execution on load)
    path = tmp_path / "pickle.pth"
    torch.save({"model": TinyNet().state_dict(), "obj": fractions.Fraction(1, 3)}, path)
    with pytest.raises(CheckpointMismatchError, match="weights-only"):
        load_checkpoint(TinyNet(), path)
