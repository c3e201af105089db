"""What train.py and test.py share: config lookup, dataset checks, strict checkpoint loading.

The launcher, device and checkpoint-unpickling set-up (gloo + DDP without device ids and BN instead of
SyncBN on CPU, NCCL on CUDA, mmengine checkpoints under torch's weights-only loading) is the one shared with
detection/, in :mod:`models.openmmlab_runtime`; it is re-exported here. mmengine's Runner does the work.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mmengine.config import Config

from models.openmmlab_runtime import (mmengine_checkpoint_globals, replace_sync_bn,  # noqa: F401
                                      resolve_launcher, setup_device)

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs" / "segmentation"
ALIASES = {"smoke": "smoke/upernet_smoke.py"}


def resolve_config(name: str) -> Path:
    """A config path, or a config name under configs/segmentation (``smoke``, ``upernet_ppma_tiny_...``)."""
    path = Path(name)
    if path.is_file():
        return path
    if name in ALIASES:
        return CONFIG_DIR / ALIASES[name]
    stem = path.name[:-3] if path.name.endswith(".py") else path.name
    matches = [p for p in CONFIG_DIR.rglob(f"{stem}.py") if "_base_" not in p.parts]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(f"config {name!r}: no such file, and no config of that name under {CONFIG_DIR}")
    raise FileNotFoundError(f"config {name!r} is ambiguous: {', '.join(map(str, matches))}")


def load_config(name: str, cfg_options: dict | None = None) -> Config:
    cfg = Config.fromfile(str(resolve_config(name)))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def check_datasets(cfg: Config, loaders=("train_dataloader", "val_dataloader", "test_dataloader")) -> None:
    """Raises a clear error when a dataloader's images are not where the config says."""
    for key in loaders:
        dataset = (cfg.get(key) or {}).get("dataset") or {}
        while "dataset" in dataset:  # dataset wrappers
            dataset = dataset["dataset"]
        root = dataset.get("data_root", "")
        img_dir = os.path.join(root, (dataset.get("data_prefix") or {}).get("img_path", ""))
        if not os.path.isdir(img_dir):
            raise SystemExit(f"{key}: dataset images not found at {img_dir!r}; put the dataset there or set "
                             f"--cfg-options {key}.dataset.data_root=PATH (see segmentation/README.md)")


# top-level classification-head modules of the families' models (absent from the headless backbones)
_CLASSIFIER_PARTS = ("head", "cls_head", "proj", "norm", "pre_logits", "fc", "classifier")


def load_segmentor_checkpoint(runner, path: str) -> None:
    """Loads a full segmentor checkpoint (ours or an official one, see models/openmmlab.py) strictly.

    Backbone keys in an official layout are mapped by the adapter while loading; the unused classifier an
    official backbone kept is ignored (and logged); any other missing or unexpected key is an error naming
    the keys (mmengine's Runner would only warn).
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper
    from mmengine.runner.checkpoint import _load_checkpoint

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if isinstance(model, BaseTTAModel):
        model = model.module
    with mmengine_checkpoint_globals(path):  # FileNotFoundError for a missing file, unknown globals refused
        checkpoint = _load_checkpoint(path, map_location="cpu")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)  # mismatches are checked right below
    # The official segmentors' backbones (PPMA, P2T, ...) were classification models that kept their unused
    # classifier; those keys (a whole classifier module our headless backbone does not have) are dropped.
    own = model.state_dict().keys()
    unused_head = [k for k in result.unexpected_keys if (m := re.match(r"backbone\.model\.([^.]+)\.", k))
                   and m.group(1) in _CLASSIFIER_PARTS and not any(o.startswith(f"backbone.model.{m.group(1)}.")
                                                                   for o in own)]
    if unused_head:
        runner.logger.info(f"ignored the official backbone's unused classifier: {', '.join(unused_head)}")
        result.unexpected_keys[:] = [k for k in result.unexpected_keys if k not in unused_head]
    if result.missing_keys or result.unexpected_keys:
        parts = [f"checkpoint {path} does not match the model of this config:"]
        if result.missing_keys:
            parts.append(f"  missing ({len(result.missing_keys)}): {', '.join(result.missing_keys[:30])}")
        if result.unexpected_keys:
            parts.append(f"  unexpected ({len(result.unexpected_keys)}): {', '.join(result.unexpected_keys[:30])}")
        raise RuntimeError("\n".join(parts))
    runner.logger.info(f"loaded checkpoint {path} (all keys matched)")
