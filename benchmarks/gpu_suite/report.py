"""The suite's report: ``gpu_suite.json`` (every record, tracebacks included) and ``gpu_suite.md`` (a summary
table, then one table per section), both rewritten atomically whenever a record arrives."""
from __future__ import annotations

import json
import os

STATUSES = ("ok", "fail", "error", "oom", "skip")
HIDDEN = {"traceback"}  # JSON only


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")[:300]


def _table(records: list[dict]) -> list[str]:
    cols = []
    for rec in records:
        cols += [k for k in rec if k not in cols and k not in HIDDEN]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(rec.get(c)) for c in cols) + " |" for rec in records]
    return lines


def _groups(records: list[dict]) -> list[list[dict]]:
    """Consecutive records with the same result fields share a table (skips and errors join the group
    they interrupt)."""
    groups, key = [], None
    for rec in records:
        fields = tuple(k for k in rec if k not in ("case", "status", "note", "wall_s", "traceback"))
        if groups and (not fields or fields == key):
            groups[-1].append(rec)
            continue
        groups.append([rec])
        key = fields
    return groups


def counts(records: list[dict]) -> dict:
    return {s: sum(r.get("status") == s for r in records) for s in STATUSES}


def render_markdown(report: dict) -> str:
    meta = report["meta"]
    out = ["# GPU suite report", ""]
    out += [f"- **{k}**: {_cell(v)}" for k, v in meta.items()]
    out += ["", "## Summary", "", "| section | state | wall s / budget s | " + " | ".join(STATUSES) + " |",
            "|---|---|---|" + "---|" * len(STATUSES)]
    for name, sec in report["sections"].items():
        c = counts(sec["records"])
        out.append(f"| {sec['title']} | {sec['state']} | {sec.get('wall_s', '')} / {sec['budget_s']} | "
                   + " | ".join(str(c[s]) for s in STATUSES) + " |")
    for name, sec in report["sections"].items():
        out += ["", f"## {sec['title']}", "", sec["doc"], ""]
        for group in _groups(sec["records"]) or [[]]:
            out += (_table(group) if group else ["(no records)"]) + [""]
    return "\n".join(out) + "\n"


def write_report(report: dict, out_dir: str) -> None:
    write_atomic(os.path.join(out_dir, "gpu_suite.json"), json.dumps(report, indent=1))
    write_atomic(os.path.join(out_dir, "gpu_suite.md"), render_markdown(report))


def read_records(path: str) -> list[dict]:
    """The records a section's child appended so far (a line cut short by a kill is dropped)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out
