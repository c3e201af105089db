"""Config lookup, the same for both task folders: a path, or a config name found under the task's configs."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config

__all__ = ["load_config", "resolve_config"]


def resolve_config(name: str, config_dir: Path, aliases: Mapping[str, str] | None = None) -> Path:
    """``name`` as a config file: an existing path, else an alias (an old name, ``smoke``), else the one config
    of that file name (``.py`` optional) under ``config_dir`` outside ``_base_``."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[:-3] if path.name.endswith(".py") else path.name
    if aliases and stem in aliases:
        return config_dir / aliases[stem]
    matches = sorted(p for p in config_dir.rglob(f"{stem}.py") if "_base_" not in p.relative_to(config_dir).parts)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(f"config {name!r}: no such file, and no config of that name under {config_dir}")
    raise FileNotFoundError(f"config {name!r} is ambiguous: {', '.join(map(str, matches))}")


def load_config(path: Path, cfg_options: dict | None = None) -> Config:
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
