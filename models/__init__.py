"""Vision backbones: PPMA, P2T, PaCa-ViT, MPViT and Spatial-Mamba, registered with timm on import.

    import models, timm
    model = timm.create_model("p2t_tiny", pretrained=True, pretrained_cfg_overlay=dict(file="p2t_tiny.pth"))

Importing this package needs only torch and timm (no OpenMMLab package). Besides the models it offers what
the layers above it (``openmmlab``, the task folders) build on: the checkpoint rules (``read_checkpoint``,
``extract_state_dict``, ``drop_classifier``, ``load_state_dict_checked``, ``checkpoint_filter_for``), the check of a
``set_grad_checkpointing`` mode (``grad_checkpointing_mode``) and the FLOP-counting handles of the custom ops (``flop_count_handles``), so that nothing above imports ``kernels``.
"""
import sys

import timm
from timm.models import model_entrypoint

from ._checkpoint import (CheckpointMismatchError, FilteredState, FilterFn, drop_classifier, extract_state_dict,
                          load_checkpoint, load_state_dict_checked, read_checkpoint)
from ._layers import grad_checkpointing_mode, to_channels_last
from . import mpvit, p2t, pacavit, ppma, spatial_mamba  # noqa: F401  (each family module registers its models with timm)

# Module names of the model families, one file each.
FAMILIES: tuple[str, ...] = ("ppma", "p2t", "pacavit", "mpvit", "spatial_mamba")


def list_models(filter: str = "") -> list[str]:
    """Names of the models this package registers (optionally filtered by a wildcard pattern)."""
    return timm.list_models(filter, module=list(FAMILIES)) if FAMILIES else []


def checkpoint_filter_for(model_name: str) -> FilterFn:
    """The official-key filter of the family that registers ``model_name``."""
    return sys.modules[model_entrypoint(model_name).__module__].checkpoint_filter_fn


def flop_count_handles() -> dict:
    """fvcore-style op handles (fvcore's ``FlopCountAnalysis``, mmengine's ``FlopAnalyzer``) for the custom ops
    of every model here: PPMA's polyline-path attention, Spatial-Mamba's selective scan and state fusion (and
    the element-wise ops its official counter skips)."""
    return {**ppma.flop_count_handles(), **spatial_mamba.flop_count_handles()}


__all__ = ["FAMILIES", "CheckpointMismatchError", "FilteredState", "checkpoint_filter_for", "drop_classifier", "extract_state_dict",
           "flop_count_handles", "grad_checkpointing_mode", "list_models", "load_checkpoint", "load_state_dict_checked", "read_checkpoint", "to_channels_last"]
