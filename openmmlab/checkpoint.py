"""One strict rule for full detector / segmentor checkpoints: ours, the papers' official ones, mmengine's own.

:func:`load_full_checkpoint` is what every load of a whole model goes through (``test.py CHECKPOINT``,
``load_from``, ``--resume``: :class:`openmmlab.runner.StrictRunner`), built on the rules of ``models``:

- reading: torch's weights-only unpickler (:func:`read_full_checkpoint`). mmengine's training checkpoints
  also pickle the message hub's HistoryBuffers and numpy arrays; exactly those globals are allowed, and the
  file's pickled globals are listed before anything is unpickled, so an unknown one is an error naming it;
- the state dict: ``models.extract_state_dict`` (``state_dict`` container, ``module.`` prefixes);
- backbone keys in an official layout: mapped by each :class:`~openmmlab.backbone.VisionBackbone`
  (the family's key filter; an official backbone's unused classifier dropped by ``models.drop_classifier``,
  the one classifier rule, and logged);
- strictness: ``models.load_state_dict_checked``: a missing, unexpected or mis-shaped key raises
  :class:`models.CheckpointMismatchError` naming it (mmengine alone would only warn).

Backbone-only checkpoints (``init_cfg=dict(type='Pretrained', ...)``) go through ``models.load_checkpoint``
in :meth:`VisionBackbone.init_weights`, with the same key handling.
"""
from __future__ import annotations

import contextlib
import os

import torch
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import nn

from models import extract_state_dict, load_state_dict_checked

from .backbone import VisionBackbone

__all__ = ["load_full_checkpoint", "mmengine_checkpoint_globals", "read_full_checkpoint"]

# Globals an mmengine training checkpoint pickles besides tensors: its message hub keeps HistoryBuffers
# (numpy arrays, statistics methods restored through getattr). numpy's dtype classes are added on top.
_CHECKPOINT_GLOBALS = (
    "mmengine.logging.history_buffer.HistoryBuffer", "builtins.getattr", "numpy.ndarray", "numpy.dtype",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
)


@contextlib.contextmanager
def mmengine_checkpoint_globals(path: str | None = None):
    """Context in which ``torch.load(weights_only=True)`` reads mmengine checkpoints, training state included.

    Only the globals mmengine's message hub needs are allowed; the weights-only unpickler still refuses any
    other. With ``path``, the file's pickled globals are listed first (without executing anything) and an
    unknown one is an error naming it, before anything is loaded."""
    import numpy as np
    import torch.serialization as serialization

    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        unknown = sorted(n for n in serialization.get_unsafe_globals_in_checkpoint(path)
                         if n not in _CHECKPOINT_GLOBALS and not n.startswith("numpy.dtypes."))
        if unknown:
            raise RuntimeError(f"{path}: refusing to unpickle globals {unknown} (not part of an mmengine "
                               f"checkpoint); if you trust the file, re-save its 'state_dict' with torch.save")
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed = [HistoryBuffer, getattr, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with serialization.safe_globals(allowed):
        yield


def read_full_checkpoint(path: str, map_location="cpu") -> dict:
    """The checkpoint at ``path`` (a local file), read without executing arbitrary pickled code."""
    path = os.fspath(path)
    with mmengine_checkpoint_globals(path):
        return torch.load(path, map_location=map_location, weights_only=True)


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model a checkpoint's keys belong to, inside DDP / mmengine wrappers and a TTA wrapper."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def load_full_checkpoint(model: nn.Module, checkpoint, source: str = "checkpoint") -> list[str]:
    """Loads a whole detector / segmentor checkpoint (as read) into ``model`` strictly.

    Returns the official classifier keys that were dropped; raises ``models.CheckpointMismatchError`` naming
    any other key that does not fit."""
    model = _unwrapped(model)
    state = extract_state_dict(checkpoint)
    dropped = []
    for name, module in model.named_modules():
        if isinstance(module, VisionBackbone):
            dropped += module.map_official_keys(state, f"{name}." if name else "")
    load_state_dict_checked(model, state, source=source)
    return dropped
