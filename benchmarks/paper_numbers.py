"""The papers' published numbers per model: params (M, as printed), FLOPs at 224 (G) and ImageNet-1K top-1 (%).

Top-1 and FLOPs are read from the ``paper-row`` comment block of ``configs/classification/<model>.yaml`` (their
one home; ``configs/classification/README.md`` is generated from the same blocks). Those blocks give params as
the exact count of the official code, so the params *as the papers / official READMEs print them* are listed
here, with where each comes from. A value the paper does not give is ``None``.

    from benchmarks.paper_numbers import paper_numbers, canonical_name
    paper_numbers("ppma_tiny")  # PaperNumbers(params_m=14.0, flops_g=2.7, top1=82.6, source=...)
"""
from __future__ import annotations

import importlib.util
import pathlib
from dataclasses import dataclass
from functools import lru_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLS_CONFIGS = ROOT / "configs" / "classification"

# Params as published (M). PPMA: official README table (14M / 27M / 54M). RMT: RMT paper, Table 1 (the PPMA
# configs reproduce its top-1). P2T: official README. PaCa-ViT: official README (cluster ablations included;
# the ConvMixer-teacher Tiny has no published row). MPViT: official README. Spatial-Mamba: official README.
PUBLISHED_PARAMS_M: dict[str, float | None] = {
    "ppma_tiny": 14.0, "ppma_small": 27.0, "ppma_base": 54.0,
    "rmt_tiny": 14.0, "rmt_small": 27.0, "rmt_base": 54.0,
    "p2t_tiny": 11.6, "p2t_small": 24.1, "p2t_base": 36.2, "p2t_large": 54.5,
    "pacavit_tiny_p2cconv_100_0": 12.2, "pacavit_small_p2cconv_100_0": 22.0, "pacavit_base_p2cconv_100_0": 46.9,
    "pacavit_small_p2cmlp_100_0": 22.6, "pacavit_small_p2cconv_2_0": 22.0, "pacavit_small_p2cconv_49_0": 22.0,
    "pacavit_small_p2cconv_49_100": 22.2, "pacavit_small_p2cconv_100_49": 22.2, "pacavit_small_p2cconv_100": 22.3,
    "pacavit_small_p2cconv_100_blockwise": 24.1, "pacavit_convmixer_tiny_100": None,
    "pacavit_convmixer_small_100": 21.1, "pacavit_convmixer_base_100": 46.7,
    "mpvit_tiny": 5.8, "mpvit_xsmall": 10.5, "mpvit_small": 22.8, "mpvit_base": 74.8,
    "spatial_mamba_tiny": 27.0, "spatial_mamba_small": 43.0, "spatial_mamba_base": 96.0,
}


@dataclass(frozen=True)
class PaperNumbers:
    params_m: float | None
    flops_g: float | None
    top1: float | None
    source: str  # the paper-row's "paper" field


def _number(text: str) -> float | None:
    """The leading number of a paper-row field ('2.7 (fvcore at 224: 2.709)' -> 2.7; '-' -> None)."""
    head = text.split(" ")[0]
    return None if head in ("-", "") else float(head)


@lru_cache(maxsize=1)
def _make_table():
    # configs/ is not a package; its table script owns the paper-row parser, so load that file
    spec = importlib.util.spec_from_file_location("cls_make_table", CLS_CONFIGS / "make_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canonical_name(model: str) -> str:
    """The registered variant an alias builds (``pacavit_tiny`` -> ``pacavit_tiny_p2cconv_100_0``); else itself."""
    from models.pacavit import _ALIASES  # the family module owns its aliases

    return _ALIASES.get(model, model)


def aliases_of(model: str) -> list[str]:
    from models.pacavit import _ALIASES

    return sorted(a for a, target in _ALIASES.items() if target == model)


def paper_numbers(model: str) -> PaperNumbers:
    """Published params / FLOPs / top-1 of ``model`` (aliases resolved); KeyError if it has no paper row."""
    name = canonical_name(model)
    path = CLS_CONFIGS / f"{name}.yaml"
    if name not in PUBLISHED_PARAMS_M or not path.is_file():
        raise KeyError(f"{model}: no published numbers (expected {path.relative_to(ROOT)} and an entry in "
                       f"PUBLISHED_PARAMS_M)")
    row = _make_table().read_paper_row(path)
    return PaperNumbers(PUBLISHED_PARAMS_M[name], _number(row["FLOPs (G)"]), _number(row["top-1"]), row["paper"])
