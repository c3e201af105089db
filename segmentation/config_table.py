"""The table of configs/segmentation/README.md, generated from each config's comment block.

    python -m segmentation.config_table            # paper columns only
    python -m segmentation.config_table --flops    # also our params / GFLOPs at 512x512 (builds every model)
    python segmentation/get_flops.py $(ls configs/segmentation/{ppma,p2t,pacavit,mpvit,spatial_mamba}/*.py) > flops.txt
    python -m segmentation.config_table --flops-from flops.txt    # the same, from get_flops.py's output

Each row config starts with a comment block: its first line says what it trains, and a ``Paper row:``
line gives the published mIoU (ss / ms), params and FLOPs.
"""
import argparse
import re
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "segmentation"

FAMILIES = ("ppma", "p2t", "pacavit", "mpvit", "spatial_mamba")


def row_configs() -> list:
    return [p for family in FAMILIES for p in sorted((CONFIG_DIR / family).glob("*.py"), key=_order)]


def _order(path: Path):
    sizes = ("tiny", "small", "base", "large")
    name = path.stem
    head = 0 if name.startswith(("upernet", "fpn")) else 1
    ablation = path.read_text().startswith("# Ablation")
    size = next((i for i, s in enumerate(sizes) if f"_{s}_" in name), 9)
    variant = 2 if "convmixer" in name else 1 if "p2cmlp" in name else 0
    return ("cityscapes" in name, head, ablation, size, variant, name)


def parse(path: Path) -> dict:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    text = " ".join(lines)
    paper = text.split("Paper row", 1)[1] if "Paper row" in text else ""

    def grab(pattern):
        m = re.search(pattern, paper)
        return m.group(1).replace(" ", "") if m else "-"

    return dict(
        config=path.relative_to(CONFIG_DIR).as_posix(),
        what=re.split(r", (?=ADE20K|Cityscapes)", lines[0])[0] if lines else "",
        dataset=re.search(r"(ADE20K|Cityscapes) \d+x\d+", lines[0]).group(0) if lines else "",
        ss=grab(r"mIoU ([\d.]+) \(ss"), ms=grab(r"/ ([\d.]+) \(ms\)"),
        params=grab(r"params ([\d.]+ ?M)"), flops=grab(r"FLOPs ([\d.]+ ?G)"),
    )


def parse_paper_row(path: Path) -> dict:
    """The paper's params / FLOPs of a config (as get_flops.py prints them next to ours)."""
    row = parse(Path(path))
    return {"params (M)": row["params"].rstrip("M"), "FLOPs (G)": row["flops"].rstrip("G")}


def read_flops(path) -> dict:
    """{config path relative to configs/segmentation: (params M, GFLOPs)} from get_flops.py's output."""
    from openmmlab.tools.get_flops import parse_line

    found = {}
    for line in Path(path).read_text().splitlines():
        parsed = parse_line(line)
        if parsed:
            config, params, flops = parsed
            found[Path(config).resolve().relative_to(CONFIG_DIR.resolve()).as_posix()] = (params, flops)
    return found


def _ours(path: Path) -> tuple[float, float]:
    """Our (params M, GFLOPs) of a config at 512x512."""
    from openmmlab.configs import load_config
    from openmmlab.flops import analyze
    from segmentation.task import TASK

    result = analyze(load_config(path), TASK.scope, TASK.flops_shape, TASK.flops_data_samples(*TASK.flops_shape))
    return result["params"] / 1e6, result["flops"] / 1e9


def table(with_flops: bool = False, flops_from=None) -> str:
    header = ["config", "model", "data", "mIoU ss", "mIoU ms", "params (paper)", "FLOPs (paper)"]
    known = read_flops(flops_from) if flops_from else None
    if with_flops or known is not None:
        header += ["params (ours)", "GFLOPs @512² (ours)"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path in row_configs():
        r = parse(path)
        cells = [f"`{r['config']}`", r["what"], r["dataset"], r["ss"], r["ms"], r["params"], r["flops"]]
        if known is not None and r["config"] in known:
            cells += [f"{known[r['config']][0]:.2f} M", f"{known[r['config']][1]:.1f}"]
        elif with_flops or known is not None:
            params, flops = _ours(path)
            cells += [f"{params:.2f} M", f"{flops:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flops", action="store_true", help="add our params / FLOPs (builds every model)")
    parser.add_argument("--flops-from", help="take our params / FLOPs from this get_flops.py output")
    args = parser.parse_args(argv)
    print(table(args.flops, args.flops_from))


if __name__ == "__main__":
    main()
