"""The backbone adapter: any model of ``models`` as an mmdet 3.x / mmseg 1.x backbone.

Configs use ``backbone=dict(type='VisionBackbone', model_name='ppma_tiny', out_indices=(0, 1, 2, 3), ...)``;
importing :mod:`openmmlab` registers it in the MODELS registry of mmdet and of mmseg.

Checkpoints, all with the key handling of ``models`` (missing / unexpected keys raise
:class:`~models.CheckpointMismatchError` naming them):

- ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads a classification checkpoint: the official
  ImageNet checkpoint of the model's paper or one of ours (trainer ``checkpoint.pth`` / ``best.pth``), whose
  classifier is dropped. ``checkpoint_key='model_ema'`` picks another container entry; ``prefix='backbone.'``
  takes the backbone out of a full detector / segmentor checkpoint; ``reinit=[regex, ...]`` names weights
  that are expected NOT to fit (e.g. PaCa's cluster projections when the downstream model uses 200 clusters
  and ImageNet used 100, as the official recipe does): where such a weight's shape differs it keeps its
  fresh initialisation, and the names are logged. Every other mismatch still raises.
- A full detector / segmentor checkpoint (``load_from``, ``--resume``, ``dist_test.sh CONFIG CKPT``) whose
  backbone weights are in the official layout (``backbone.<official key>``, as the papers' mmdet / mmseg
  checkpoints have them) is mapped to ours by :meth:`VisionBackbone.map_official_keys`: explicitly by the
  strict loader of :mod:`openmmlab.checkpoint`, and as a state-dict pre-hook for any other
  ``load_state_dict`` (mmengine's own loaders), so official checkpoints evaluate without a conversion step.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import timm
import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.models import group_parameters
from torch import nn

from models import (CheckpointMismatchError, FilteredState, checkpoint_filter_for, drop_classifier, extract_state_dict,
                    grad_checkpointing_mode, list_models, load_checkpoint, read_checkpoint)


class VisionBackbone(BaseModule):
    """A model of this package as a multi-scale backbone (tuple of NCHW maps at ``out_indices``).

    Args:
        model_name: a name from :func:`models.list_models`.
        out_indices: stages whose outputs are returned (0-3, strides 4, 8, 16, 32).
        drop_path_rate: stochastic depth rate; ``None`` keeps the model's default.
        frozen_stages: -1 trains everything; 0 freezes the stem; ``k >= 1`` the stem and stages 1..k
            (their parameters get no gradient and their modules stay in eval mode).
        norm_eval: keep BatchNorm layers in eval mode (frozen statistics) while training.
        with_cp: gradient checkpointing: True recomputes every block's activations in backward, ``'selective'``
            only its cheap ones (norms, activations, depthwise convs; the same gradients, less memory than none,
            less time than True; see ``models._layers.run_block``).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH[, checkpoint_key=..., prefix=..., reinit=[...]])``
            or None (see the module docstring).
        **model_kwargs: passed to ``timm.create_model``, e.g. ``out_norm=True`` (PPMA, Spatial-Mamba
            downstream output norms) or ``ffn_recompute=True`` (PPMA/RMT: each FFN's LayerNorm, GELU and
            depthwise conv recomputed in backward; the same gradients for about a quarter less activation memory).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool | str = False,
        init_cfg: dict | None = None,
        **model_kwargs,
    ):
        if init_cfg is not None and init_cfg.get("type") != "Pretrained":
            raise ValueError(f"VisionBackbone: init_cfg must be dict(type='Pretrained', checkpoint=...), got {init_cfg}")
        super().__init__(init_cfg=init_cfg)
        known = list_models()
        if model_name not in known:
            raise ValueError(f"VisionBackbone: unknown model_name {model_name!r}; known: {', '.join(known)}")
        if drop_path_rate is not None:
            model_kwargs["drop_path_rate"] = drop_path_rate
        self.model_name = model_name
        self.out_indices = tuple(out_indices)
        # headless, pruned after the last stage used, as timm's features_only does; kept unwrapped so that the
        # state dict is ``model.<key of the classification model>``
        self.model = timm.create_model(model_name, num_classes=0, **model_kwargs)
        self.out_indices = tuple(self.model.prune_intermediate_layers(self.out_indices, prune_norm=True))
        self.channels = [self.model.feature_info[i]["num_chs"] for i in self.out_indices]
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if grad_checkpointing_mode(with_cp, "VisionBackbone: with_cp"):
            self.model.set_grad_checkpointing(with_cp)
        self._frozen_modules = self._freeze(frozen_stages)
        self._register_load_state_dict_pre_hook(self._map_official_keys_hook)

    # ------------------------------------------------------------------------------------------- freezing
    def _freeze(self, frozen_stages: int) -> list[nn.Module]:
        if frozen_stages < 0:
            return []
        # coarse groups of the family's group_matcher: 0 = stem, then one group per stage in order
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        frozen = {name for gid, names in groups.items() if gid <= frozen_stages for name in names}
        if len(groups) < frozen_stages + 1:
            raise ValueError(f"VisionBackbone: frozen_stages={frozen_stages} but {self.model_name} has "
                             f"{len(groups) - 1} stages")
        for name, p in self.model.named_parameters():
            if name in frozen:
                p.requires_grad_(False)
        modules = []
        for name, module in self.model.named_modules():
            names = [f"{name}.{n}" if name else n for n, _ in module.named_parameters()]
            if names and all(n in frozen for n in names):
                modules.append(module)
        return modules

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for m in self._frozen_modules:
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    # ------------------------------------------------------------------------------------------ weights
    def init_weights(self):
        """Loads ``init_cfg``'s checkpoint (the model's own initialisation ran at construction)."""
        if self.init_cfg is None:
            return
        cfg = dict(self.init_cfg)
        path = cfg.pop("checkpoint", None)
        key, prefix = cfg.pop("checkpoint_key", None), cfg.pop("prefix", None)
        reinit = [re.compile(r) for r in cfg.pop("reinit", ())]
        cfg.pop("type")
        if path is None or cfg:
            raise ValueError(f"VisionBackbone: init_cfg needs 'checkpoint' (and optionally 'checkpoint_key', "
                             f"'prefix', 'reinit'); got {self.init_cfg}")
        state = extract_state_dict(read_checkpoint(path), key)
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointMismatchError(f"{path}: no keys start with prefix {prefix!r}")
            state = self._strip_wrapper(state)
        kept = load_checkpoint(self.model, state, self._filter_with_reinit(reinit))
        if kept:
            print_log(f"VisionBackbone: {path}: kept the fresh initialisation of {len(kept)} weights (not in the "
                      f"checkpoint, or of another shape where init_cfg.reinit allows): {', '.join(kept)}",
                      logger="current")
        self._is_init = True

    def _filter_with_reinit(self, reinit: list[re.Pattern]):
        """The family's key filter, then: weights ``reinit`` names whose shape differs from the model's are
        left out of the state and named to keep their initialisation (the loader reports them)."""
        family_filter = checkpoint_filter_for(self.model_name)

        def filter_fn(state: dict, model: nn.Module) -> FilteredState:
            state = family_filter(state, model)
            own = model.state_dict()
            kept = [k for k, v in state.items()
                    if k in own and v.shape != own[k].shape and any(r.search(k) for r in reinit)]
            out = FilteredState({k: v for k, v in state.items() if k not in kept}, keep_init=kept)
            return FilteredState(out, keep_init=getattr(state, "keep_init", ()))

        return filter_fn

    @staticmethod
    def _strip_wrapper(state: dict) -> dict:
        # our own detector / segmentor checkpoints keep the backbone under ``model.``
        if state and all(k.startswith("model.") for k in state):
            return {k[len("model."):]: v for k, v in state.items()}
        return state

    def map_official_keys(self, state_dict: dict, prefix: str) -> list[str]:
        """Maps, in place, this backbone's keys under ``prefix`` from the official layout to ours.

        A no-op when they are already ours (``<prefix>model.*``). Returns the classifier keys dropped: an
        official backbone may keep its unused ImageNet classifier (P2T's does), which goes as it does for a
        classification checkpoint loaded into a headless model (``models.drop_classifier``)."""
        own = [k for k in state_dict if k.startswith(prefix)]
        if not own or all(k[len(prefix):].startswith("model.") for k in own):
            return []
        sub = {k[len(prefix):]: state_dict.pop(k) for k in own}
        mapped = checkpoint_filter_for(self.model_name)(sub, self.model)
        dropped = drop_classifier(mapped, self.model)
        for k, v in mapped.items():
            state_dict[f"{prefix}model.{k}"] = v
        return sorted(f"{prefix}{k}" for k in dropped)

    def _map_official_keys_hook(self, state_dict, prefix, *args):
        self.map_official_keys(state_dict, prefix)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.forward_intermediates(x, indices=self.out_indices, intermediates_only=True))

