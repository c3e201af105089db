"""Segmentation as the shared tools (``openmmlab.tools``) see it: mmseg, ``configs/segmentation``, the embedded
ADE20K-style data and the paper rows of the config headers."""
from pathlib import Path

from openmmlab.task import MMSegTask

from . import config_table, embedded_data

TASK = MMSegTask("segmentation", Path(__file__).resolve().parent.parent / "configs" / "segmentation", embedded_data,
                 paper_row=config_table.parse_paper_row, aliases={"smoke": "smoke/upernet_smoke.py"})
