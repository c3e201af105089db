"""One strict rule for full detector / segmentor checkpoints: ours, the papers' official ones, mmengine's own.

:func:`load_full_checkpoint` is what every load of a whole model goes through (``test.py CHECKPOINT``,
``load_from``, ``--resume``: :class:`openmmlab.runner.StrictRunner`), built on the rules of ``models``:

- reading: torch's weights-only unpickler (:func:`read_full_checkpoint`). mmengine's training checkpoints
  also pickle the message hub's HistoryBuffers and numpy arrays; exactly those globals are allowed, and the
  file's pickled globals are listed before anything is unpickled, so an unknown one is an error naming it.
  A file that is not a checkpoint (empty, text, a plain pickle), a truncated one (an interrupted save or
  copy) or a corrupted one is a :class:`CheckpointReadError` naming the file and saying which, not a
  pickle traceback; ``--resume`` also needs the training state (:func:`check_resumable`);
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
import zipfile

import torch
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import nn

from models import CheckpointMismatchError, extract_state_dict, load_state_dict_checked

from .backbone import VisionBackbone

__all__ = ["CheckpointReadError", "check_checkpoint_file", "check_resumable", "load_full_checkpoint",
           "mmengine_checkpoint_globals", "read_full_checkpoint"]

# Globals an mmengine training checkpoint pickles besides tensors: its message hub keeps HistoryBuffers
# (numpy arrays, statistics methods restored through getattr). numpy's dtype classes are added on top.
_CHECKPOINT_GLOBALS = (
    "mmengine.logging.history_buffer.HistoryBuffer", "builtins.getattr", "numpy.ndarray", "numpy.dtype",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
)


# the first bytes of what torch.save writes: a zip archive (torch >= 1.6), or the legacy format, a pickle that
# starts with torch's magic number (older official checkpoints)
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


class CheckpointReadError(RuntimeError):
    """A file that cannot be read as a checkpoint (not written by torch.save, truncated, corrupted, pickling
    other objects than a checkpoint's), or that lacks what the load needs (``--resume``: the training state)."""


def check_checkpoint_file(path: str) -> bool:
    """Raises naming ``path`` unless it starts as torch.save's output; True for the zip format, False for the
    legacy one. A zip archive without its end (central directory) is truncated."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointReadError(f"{path}: truncated checkpoint ({os.path.getsize(path)} bytes; the zip archive "
                                      f"torch.save writes has no end: an interrupted save or copy)")
        with zipfile.ZipFile(path) as archive:
            if not any(n.endswith("/data.pkl") for n in archive.namelist()):
                raise CheckpointReadError(f"{path}: not a checkpoint (a zip archive without torch.save's data.pkl)")
        return True
    if head == _LEGACY_MAGIC:
        return False
    raise CheckpointReadError(f"{path}: not a checkpoint ({_describe_head(head)})")


def _describe_head(head: bytes) -> str:
    if not head:
        return "an empty file"
    if head.startswith(b"\x80"):  # pickle protocol 2+ opcode: pickle.dump's output, not torch.save's
        return "a plain pickle, not written by torch.save"
    return f"not written by torch.save; it starts with {head[:8]!r}"


def _reason(err: Exception) -> str:
    """The informative line of a torch.load error (the weights-only unpickler's are paragraphs of advice)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


@contextlib.contextmanager
def mmengine_checkpoint_globals(path: str | None = None):
    """Context in which ``torch.load(weights_only=True)`` reads mmengine checkpoints, training state included.

    Only the globals mmengine's message hub needs are allowed; the weights-only unpickler still refuses any
    other. With ``path``, the file's pickled globals are listed first (without executing anything) and an
    unknown one is an error naming it, before anything is loaded."""
    import numpy as np
    import torch.serialization as serialization

    # the legacy format cannot be listed; its unknown globals are refused by torch.load itself
    if path is not None and check_checkpoint_file(path):
        try:
            found = serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as err:  # a zip archive whose pickle is damaged
            raise CheckpointReadError(f"{path}: corrupted checkpoint ({_reason(err)})") from err
        unknown = sorted(n for n in found if n not in _CHECKPOINT_GLOBALS and not n.startswith("numpy.dtypes."))
        if unknown:
            raise CheckpointReadError(f"{path}: refusing to unpickle globals {unknown} (not part of an mmengine "
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
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # the file's start was right: its content is refused, damaged or cut short
            reason = _reason(err)
            if reason.startswith("Unsupported global"):  # legacy format: its globals could not be listed first
                raise CheckpointReadError(f"{path}: refusing to unpickle ({reason.split('. ')[0]}); not part of "
                                          f"an mmengine checkpoint") from err
            raise CheckpointReadError(f"{path}: corrupted or truncated checkpoint ({reason})") from err


def check_resumable(checkpoint, path: str) -> None:
    """``--resume`` restores the training state too: a weights-only checkpoint (an official one, one re-saved
    for release) is an error naming the file, where mmengine would fail with a KeyError."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    missing = [k for k in ("meta.epoch", "meta.iter") if not isinstance(meta, dict) or k[5:] not in meta]
    missing += [] if isinstance(checkpoint, dict) and "message_hub" in checkpoint else ["message_hub"]
    if missing:
        raise CheckpointReadError(f"{path}: not a training checkpoint to resume from (no {', '.join(missing)}); "
                                  f"to start a new run from its weights use load_from={path!r} without --resume")


def _with_run(checkpoint, source: str) -> str:
    """``source`` followed by the run that wrote it (mmengine's ``meta.experiment_name``: config name and time),
    so that a checkpoint of another model is named by what it is, not only by its keys."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    run = meta.get("experiment_name") if isinstance(meta, dict) else None
    return f"{source} (written by run {run})" if isinstance(run, str) and run else source


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
    source = _with_run(checkpoint, source)
    try:
        state = extract_state_dict(checkpoint)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"{source}: {err}") from err
    if state and not state.keys() & model.state_dict().keys() and not any(
            k.startswith("backbone.") for k in state):  # an official backbone layout shares no key until mapped
        raise CheckpointMismatchError(
            f"{source}: a checkpoint of another model, no key in common with {type(model).__name__} (it has "
            f"{len(state)} keys such as {', '.join(sorted(state)[:3])}); a backbone's (classification) checkpoint "
            f"goes into model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...)")
    dropped = []
    for name, module in model.named_modules():
        if isinstance(module, VisionBackbone):
            dropped += module.map_official_keys(state, f"{name}." if name else "")
    load_state_dict_checked(model, state, source=source)
    return dropped
