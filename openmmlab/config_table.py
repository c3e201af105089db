"""Config tables and OpenMMLab-style metafiles, generated from the header of every row config.

Every config of a paper-table row starts with a comment block (fields per task)::

    # paper-row:
    #   paper: P2T (Wu et al., TPAMI 2022)
    #   backbone: P2T-T
    #   ...

Each task folder's ``config_table.py`` describes its table (:class:`TableSpec`: the block's fields, the
columns, the metafile's results); :func:`main` writes the table between the markers of
``configs/<task>/README.md`` and of ``<task>/README.md``, and ``configs/<task>/metafile.yml`` (the format of
mmdet's / mmseg's metafiles), or with ``--check`` exits 1 naming what is stale.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["MARKERS", "TableSpec", "main", "parse_paper_row"]

MARKERS = ("<!-- rows:start -->", "<!-- rows:end -->")
FAMILIES = ("ppma", "p2t", "pacavit", "mpvit", "spatial_mamba")
_LINE = re.compile(r"^#\s{3}([^:]+):\s*(.*?)\s*$")


def parse_paper_row(path: str | Path, fields: tuple[str, ...] = ()) -> dict | None:
    """The ``paper-row`` block of a config as a dict (None when it has none); ``fields`` must all be there."""
    lines = Path(path).read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "# paper-row:"), None)
    if start is None:
        return None
    row = {}
    for line in lines[start + 1:]:
        m = _LINE.match(line)
        if not m:
            break
        row[m.group(1).strip()] = m.group(2)
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{path}: paper-row block lacks {missing}")
    return row


@dataclass(frozen=True)
class TableSpec:
    """One task's table.

    Args:
        task: the task folder (``detection``).
        config_dir: its configs; row configs are ``<config_dir>/<family>/*.py``.
        columns: the block fields shown after the config link, in order (all required in every block).
        order: sort key of a family's row configs.
        results: the metafile ``Results`` of a row (a list of ``dict(Task=, Dataset=, Metrics=)``).
        metadata: the metafile ``Metadata`` of a row.
    """

    task: str
    config_dir: Path
    columns: tuple[str, ...]
    order: Callable[[Path], tuple]
    results: Callable[[dict], list[dict]]
    metadata: Callable[[dict], dict]  # entries that are None are left out

    @property
    def fields(self) -> tuple[str, ...]:
        return ("paper", *self.columns)

    @property
    def repo(self) -> Path:
        return self.config_dir.parent.parent

    def row_configs(self) -> list[Path]:
        """The configs of paper rows (one per table row), family by family."""
        return [p for fam in FAMILIES for p in sorted((self.config_dir / fam).glob("*.py"), key=self.order)]

    def smoke_configs(self) -> list[Path]:
        return sorted((self.config_dir / "smoke").glob("*.py"))

    def parse(self, path: str | Path) -> dict | None:
        """The config's block, with every field of this table (None when it has no block)."""
        return parse_paper_row(path, self.fields)

    def rows(self) -> list[tuple[Path, dict]]:
        out = []
        for path in self.row_configs():
            row = self.parse(path)
            if row is None:
                raise ValueError(f"{path}: no paper-row comment block")
            out.append((path, row))
        return out


def render_rows(spec: TableSpec, link_prefix: str = "") -> list[str]:
    """The markdown table, a bold line per paper, then one line per row config (links: prefix + path
    relative to the config dir)."""
    out = ["| " + " | ".join(("config", *spec.columns)) + " |", "|" + "---|" * (len(spec.columns) + 1)]
    paper = None
    for path, row in spec.rows():
        if row["paper"] != paper:
            paper = row["paper"]
            out.append(f"| **{paper}** |" + " |" * len(spec.columns))
        link = link_prefix + path.relative_to(spec.config_dir).as_posix()
        out.append(f"| [{path.name}]({link}) | " + " | ".join(row[c] for c in spec.columns) + " |")
    return out


def replace_table(text: str, rows: list[str], where: Path) -> str:
    start, end = MARKERS
    if start not in text or end not in text:
        raise ValueError(f"{where} lacks the markers {MARKERS}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + "\n".join(rows) + "\n" + end + tail


def _number(value: str):
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return None


def render_metafile(spec: TableSpec) -> str:
    """``Collections`` (one per paper) and ``Models`` (one per row config), as mmdet's / mmseg's metafiles."""
    collections, models = {}, []
    for path, row in spec.rows():
        name = row["paper"].split(" (")[0]
        collections.setdefault(name, {"Name": name, "Paper": {"Title": row["paper"]},
                                      "README": f"configs/{spec.task}/README.md"})
        metadata = {k: v for k, v in spec.metadata(row).items() if v is not None}
        model = {"Name": path.stem, "In Collection": name, "Config": path.relative_to(spec.repo).as_posix(),
                 "Metadata": metadata}
        results = [r for r in spec.results(row) if r["Metrics"]]
        if results:
            model["Results"] = results
        models.append(model)
    header = f"# Generated by `python -m {spec.task}.config_table` from the configs' paper-row blocks.\n"
    return header + yaml.safe_dump({"Collections": list(collections.values()), "Models": models},
                                   sort_keys=False, allow_unicode=True, width=120)


def metrics(row: dict, names: dict[str, str]) -> dict:
    """``{metric name: number}`` for the block fields ``names`` maps that hold a number."""
    out = {}
    for field, metric in names.items():
        value = _number(row.get(field, "-"))
        if value is not None:
            out[metric] = value
    return out


def outputs(spec: TableSpec) -> dict[Path, str]:
    """Every generated file with its content: both READMEs' tables and the metafile."""
    configs_readme, task_readme = spec.config_dir / "README.md", spec.repo / spec.task / "README.md"
    return {
        configs_readme: replace_table(configs_readme.read_text(), render_rows(spec), configs_readme),
        task_readme: replace_table(task_readme.read_text(), render_rows(spec, f"../configs/{spec.task}/"),
                                   task_readme),
        spec.config_dir / "metafile.yml": render_metafile(spec),
    }


def main(spec: TableSpec, argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {spec.task}.config_table",
                                     description=f"Regenerate the {spec.task} config tables and metafile")
    parser.add_argument("--check", action="store_true", help="only check that they are up to date")
    args = parser.parse_args(argv)
    generated = outputs(spec)
    if args.check:
        stale = [str(p) for p, text in generated.items() if not p.is_file() or p.read_text() != text]
        if stale:
            print(f"stale: {stale}; run python -m {spec.task}.config_table", file=sys.stderr)
            return 1
        return 0
    for path, text in generated.items():
        path.write_text(text)
        print(f"wrote {path} ({len(spec.row_configs())} configs)")
    return 0
