"""Loading official (and our own) checkpoints into the models of this package.

Every family registers its default configs with ``custom_load=True``, so that
``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`` calls the model's
``load_pretrained(path)``, which calls :func:`load_checkpoint` here with the family's key filter. This
gives one behaviour for all families:

- the file is read on the CPU with ``torch.load(weights_only=True)``; training checkpoints that also pickle
  an ``argparse.Namespace`` (DeiT-style ``args``) are accepted;
- the weights are taken from the container key the official code evaluates (``model``, then ``models``,
  ``state_dict``, ``model_ema``, ``state_dict_ema``; a plain state dict is used as it is), or from the key
  named by ``checkpoint_key`` (``pretrained_cfg_overlay=dict(file=PATH, checkpoint_key='model_ema')``:
  ``build_model`` takes it out of the overlay, which timm would refuse, and hands it over through
  :func:`use_checkpoint_key`);
- a ``module.`` prefix (DataParallel / DDP) is removed, then the family's filter maps official keys to ours;
- the classifier is dropped when the model has no head or was built with another ``num_classes`` than
  its pretrained cfg (a head of the wrong size in the checkpoint is a mismatch);
- a filter may name model keys the checkpoint lacks by design (a classification checkpoint has no
  downstream output norms): it returns a :class:`FilteredState` with them in ``keep_init``; they keep the
  model's initialisation, and the loader logs them (logger ``models``) and returns them - a filter never
  fills them in itself;
- anything else that does not match (missing keys, unexpected keys, shape mismatches) raises
  :class:`CheckpointMismatchError` naming the offending keys. Nothing is loaded with a blind
  ``strict=False``.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import logging
import os
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

CONTAINER_KEYS = ("model", "models", "state_dict", "model_ema", "state_dict_ema")

FilterFn = Callable[[dict, nn.Module], dict]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into."""


class FilteredState(dict):
    """A checkpoint filter's result: the state dict, and in ``keep_init`` the model keys the checkpoint lacks
    by design, which keep the model's initialisation (the loader allows and reports them)."""

    def __init__(self, state: Mapping, keep_init=()):
        super().__init__(state)
        self.keep_init = frozenset(keep_init) | frozenset(getattr(state, "keep_init", ()))


_LOG = logging.getLogger("models")


_CHECKPOINT_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("checkpoint_key", default=None)


@contextlib.contextmanager
def use_checkpoint_key(key: str | None) -> Iterator[None]:
    """Within this context, :func:`load_checkpoint` takes the weights from container key ``key``."""
    token = _CHECKPOINT_KEY.set(key)
    try:
        yield
    finally:
        _CHECKPOINT_KEY.reset(token)


def read_checkpoint(path: str | os.PathLike) -> object:
    """Reads a checkpoint file on the CPU without executing arbitrary pickled code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError, or a RuntimeError wrapping it
            raise CheckpointMismatchError(
                f"{path}: cannot be read as a weights-only checkpoint ({err}). If you trust the file, "
                f"load it with torch.load(weights_only=False) and pass its state dict instead."
            ) from err


def extract_state_dict(checkpoint: object, key: str | None = None) -> dict[str, torch.Tensor]:
    """Picks the state dict out of a checkpoint container and strips DataParallel prefixes."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f"expected a dict-like checkpoint, got {type(checkpoint).__name__}")
    if key is not None:
        if key not in checkpoint:
            raise CheckpointMismatchError(f"checkpoint has no key {key!r}; it has {sorted(checkpoint)}")
        state = checkpoint[key]
    elif all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        found = [k for k in CONTAINER_KEYS if isinstance(checkpoint.get(k), Mapping)]
        if not found:
            raise CheckpointMismatchError(
                f"no state dict in checkpoint: expected one of {CONTAINER_KEYS} or a flat dict of tensors, "
                f"got keys {sorted(checkpoint)[:20]}"
            )
        state = checkpoint[found[0]]
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"checkpoint entry {key!r} is a {type(state).__name__}, not a state dict")
    out = {}
    for k, v in state.items():
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def _format_keys(keys, limit=20):
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    allow_missing: Callable[[str], bool] | None = None,
    source: str = "checkpoint",
) -> None:
    """Loads ``state_dict`` into ``model``; any missing key (unless ``allow_missing`` accepts it),
    unexpected key or shape mismatch raises :class:`CheckpointMismatchError` naming them."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not (allow_missing and allow_missing(k))]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"{source} does not match {type(model).__name__}:"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {_format_keys(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {_format_keys(unexpected)}")
        if shapes:
            parts.append(f"  shape mismatches ({len(shapes)}): {'; '.join(shapes[:10])}")
        raise CheckpointMismatchError("\n".join(parts))
    # every remaining model key is either present or explicitly allowed to be missing
    model.load_state_dict(state_dict, strict=False)


def _classifier_names(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def load_checkpoint(
    model: nn.Module,
    path_or_state: str | os.PathLike | Mapping,
    filter_fn: FilterFn | None = None,
    checkpoint_key: str | None = None,
) -> list[str]:
    """Loads an official-layout or project checkpoint (file or already-read container) into ``model``.

    Returns the model keys that kept their initialisation because the filter named them (also logged)."""
    source = os.fspath(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else "state dict"
    checkpoint = read_checkpoint(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else path_or_state
    if checkpoint_key is None:
        checkpoint_key = _CHECKPOINT_KEY.get()
    state = extract_state_dict(checkpoint, checkpoint_key)
    if filter_fn is not None:
        state = filter_fn(state, model)
    keep = sorted(getattr(state, "keep_init", ()))
    dropped = drop_classifier(state, model)
    load_state_dict_checked(model, state, allow_missing=lambda k: k in dropped or k in keep, source=source)
    if keep:
        _LOG.info("%s: %d weights of %s are not in the checkpoint and keep their initialisation, as the "
                  "checkpoint filter allows: %s", source, len(keep), type(model).__name__, _format_keys(keep))
    return keep


def drop_classifier(state: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    """Removes (in place) and returns the classifier keys of ``state`` that do not transfer to ``model``.

    The classifier only transfers to a model built for the checkpoint's classes: it is dropped when the
    model has no head (num_classes=0, features_only) or was built with another num_classes than its
    pretrained cfg (as timm does). A head that does not fit otherwise is a mismatch like any other.
    """
    own = model.state_dict()
    cfg_classes = (getattr(model, "pretrained_cfg", None) or {}).get("num_classes")
    new_head = cfg_classes is not None and getattr(model, "num_classes", cfg_classes) != cfg_classes
    dropped = set()
    for name in _classifier_names(model):
        for suffix in (".weight", ".bias"):
            k = name + suffix
            if k in state and (k not in own or new_head):
                state.pop(k)
                dropped.add(k)
    return dropped
