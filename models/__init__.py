"""Vision backbones: PPMA, P2T, PaCa-ViT, MPViT and Spatial-Mamba, registered with timm on import.

    import models, timm
    model = timm.create_model("p2t_tiny", pretrained=True, pretrained_cfg_overlay=dict(file="p2t_tiny.pth"))

Importing this package needs only torch and timm (no OpenMMLab package).
"""
import timm

from ._checkpoint import CheckpointMismatchError, load_checkpoint
from . import mpvit, p2t, pacavit, ppma, spatial_mamba  # noqa: F401  (each family module registers its models with timm)

# Module names of the model families, one file each.
FAMILIES: tuple[str, ...] = ("ppma", "p2t", "pacavit", "mpvit", "spatial_mamba")


def list_models(filter: str = "") -> list[str]:
    """Names of the models this package registers (optionally filtered by a wildcard pattern)."""
    return timm.list_models(filter, module=list(FAMILIES)) if FAMILIES else []


__all__ = ["FAMILIES", "CheckpointMismatchError", "list_models", "load_checkpoint"]
