"""Dataset checks before a run, and what the task folders' embedded datasets share.

:func:`check_datasets` walks the leaf datasets of the given dataloaders (through wrappers such as
``RepeatDataset`` / ``ConcatDataset``): a ``data_root`` named as the task's embedded dataset
(``task.embedded_data.DEFAULT_ROOT``'s directory name) gets it generated there, and a missing annotation
file or image folder stops the run with the path the config expected, instead of an error deep inside the
first iteration. :func:`write_atomically` and :func:`generator_cli` are the common part of the generators.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_datasets", "generator_cli", "leaf_datasets", "write_atomically"]


def leaf_datasets(dataset) -> list:
    """The leaf dataset configs of a (possibly wrapped) dataset config."""
    if not dataset:
        return []
    if "datasets" in dataset:
        return [d for sub in dataset["datasets"] for d in leaf_datasets(sub)]
    if "dataset" in dataset:
        return leaf_datasets(dataset["dataset"])
    return [dataset]


def _join(root, path):
    return path if not root or osp.isabs(path) else osp.join(root, path)


def _required_paths(dataset) -> list[tuple[str, str, Callable[[str], bool]]]:
    """(what, path, exists) for the files a dataset config names: mmdet's ``ann_file`` / ``data_prefix.img``,
    mmseg's ``data_prefix.img_path``."""
    root = dataset.get("data_root") or ""
    prefix = dataset.get("data_prefix") or {}
    out = []
    if dataset.get("ann_file"):
        out.append(("annotation file", _join(root, dataset["ann_file"]), osp.isfile))
    for key in ("img", "img_path"):
        if key in prefix:
            out.append(("image folder", _join(root, prefix[key]), osp.isdir))
    return out


def check_datasets(cfg, loaders: tuple[str, ...], task) -> None:
    """Generates embedded datasets the loaders point at; raises FileNotFoundError naming a missing path."""
    for loader in loaders:
        for dataset in leaf_datasets((cfg.get(loader) or {}).get("dataset")):
            root = dataset.get("data_root")
            if root and Path(os.fspath(root)).name == task.embedded_data.DEFAULT_ROOT.name:
                task.embedded_data.generate(root)
            for what, path, exists in _required_paths(dataset):
                if not exists(path):
                    raise FileNotFoundError(
                        f"{loader}: {what} {path!r} not found. Put the dataset there (see {task.name}/README.md) or "
                        f"point the config at it, e.g. --cfg-options {loader}.dataset.data_root=/path/to/data")
    for loader in loaders:
        evaluators = cfg.get(loader.replace("dataloader", "evaluator")) or []
        for metric in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            ann_file = metric.get("ann_file")
            if ann_file and not metric.get("format_only") and not osp.isfile(ann_file):
                raise FileNotFoundError(f"{loader.replace('dataloader', 'evaluator')}: annotation file "
                                        f"{ann_file!r} not found")


def write_atomically(root: str | os.PathLike, write: Callable[[Path], None], is_complete: Callable[[Path], bool],
                     overwrite: bool = False) -> Path:
    """Runs ``write(tmp)`` in a temporary sibling of ``root`` and renames it onto ``root``.

    A concurrent reader (or the other ranks of a torchrun job writing the same data) never sees a half-written
    dataset; when another writer finished first, its complete copy is kept. Does nothing when ``root`` is
    already complete (unless ``overwrite``); refuses to replace anything else. Returns ``root``."""
    root = Path(root).resolve()
    if is_complete(root) and not overwrite:
        return root
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists but is not a complete dataset; remove it to regenerate")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write(tmp)
        if overwrite and root.exists():
            shutil.rmtree(root)
        try:
            os.rename(tmp, root)  # replaces an empty directory; fails if another process got there first
        except OSError:
            if not is_complete(root):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def generator_cli(generate: Callable[..., Path], default_root: Path, doc: str, argv=None) -> None:
    """``python -m <task>.embedded_data [ROOT] [--overwrite]``: writes the dataset, prints where."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(default_root))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)
    print(generate(args.root, overwrite=args.overwrite))
