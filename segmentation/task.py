"""Segmentation as the shared tools (``openmmlab.tools``) see it: mmseg, ``configs/segmentation``, the embedded
ADE20K-style data."""
from pathlib import Path

from openmmlab.task import MMSegTask

from . import embedded_data

TASK = MMSegTask("segmentation", Path(__file__).resolve().parent.parent / "configs" / "segmentation", embedded_data)
