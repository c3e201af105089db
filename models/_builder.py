"""The one builder every family's ``@register_model`` functions call."""
from __future__ import annotations

import torch
from timm.models import build_model_with_cfg
from timm.models._features import FeatureGetterNet

from ._checkpoint import FilterFn, use_checkpoint_key


class FeatureGetter(FeatureGetterNet):
    """timm's ``features_only`` wrapper around ``forward_intermediates``, with the ``set_grad_checkpointing`` of
    the model it wraps (timm's wrapper has none, so a features-only model could not be checkpointed)."""

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool | str = True):
        self.model.set_grad_checkpointing(enable)


def build_model(model_cls, variant: str, pretrained: bool = False, *, filter_fn: FilterFn, **kwargs):
    """``timm.models.build_model_with_cfg`` with this package's conventions.

    - Weights given as ``pretrained_cfg_overlay=dict(file=PATH)`` go through the model's own
      ``load_pretrained`` (official container and key layouts, loud mismatches; see ``_checkpoint``).
      timm resets ``custom_load`` to False whenever an overlay names a weight source, so it is set back here
      unless the caller sets it explicitly (``custom_load=False`` selects timm's plain loader). The overlay
      may name the container entry to load, ``checkpoint_key='model_ema'`` (not a timm cfg field: it is
      taken out here and handed to the loader).
    - ``features_only=True`` returns the four stage outputs through the model's ``forward_intermediates``
      (:class:`FeatureGetter`, timm's getter wrapper that also passes ``set_grad_checkpointing`` on).
      The model is then built without a classifier (the feature wrapper would drop it anyway), so
      headless checkpoints, e.g. from detection, load and no random head is left behind.
    """
    if kwargs.get("features_only"):
        kwargs["num_classes"] = 0
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    checkpoint_key = overlay.pop("checkpoint_key", None)
    if overlay:
        kwargs["pretrained_cfg_overlay"] = {"custom_load": True, **overlay}
    kwargs.setdefault("feature_cfg", dict(out_indices=(0, 1, 2, 3), feature_cls=FeatureGetter))
    with use_checkpoint_key(checkpoint_key):
        return build_model_with_cfg(model_cls, variant, pretrained, pretrained_filter_fn=filter_fn, **kwargs)
