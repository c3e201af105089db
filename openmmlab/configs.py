"""Config lookup, the same for both task folders: a path, a config name, or an alias under the task's configs.

A config declares its other names in its header, one line each (old names of renamed configs, ``smoke``)::

    # alias: upernet_ppma_tiny_512x512_160k_ade20k
"""
from __future__ import annotations

import re
from pathlib import Path

from mmengine.config import Config

__all__ = ["config_aliases", "load_config", "resolve_config"]

_ALIAS = re.compile(r"^# alias: (\S+)\s*$", re.M)


def _configs(config_dir: Path) -> list[Path]:
    return sorted(p for p in config_dir.rglob("*.py") if "_base_" not in p.relative_to(config_dir).parts)


def config_aliases(config_dir: Path) -> dict[str, Path]:
    """``{alias: config}`` from the ``# alias:`` lines of the configs under ``config_dir``."""
    aliases = {}
    for path in _configs(config_dir):
        for alias in _ALIAS.findall(path.read_text()):
            if alias in aliases:
                raise ValueError(f"alias {alias!r} is declared by {aliases[alias]} and {path}")
            aliases[alias] = path
    return aliases


def resolve_config(name: str, config_dir: Path) -> Path:
    """``name`` as a config file: an existing path, else the one config of that file name (``.py`` optional)
    under ``config_dir`` outside ``_base_``, else the config declaring it as an alias."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[:-3] if path.name.endswith(".py") else path.name
    matches = [p for p in _configs(config_dir) if p.stem == stem]
    if not matches and stem in (aliases := config_aliases(config_dir)):
        return aliases[stem]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(f"config {name!r}: no such file, and no config or alias of that name under {config_dir}")
    raise FileNotFoundError(f"config {name!r} is ambiguous: {', '.join(map(str, matches))}")


def load_config(path: Path, cfg_options: dict | None = None) -> Config:
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
