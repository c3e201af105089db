"""Detection as the shared tools (``openmmlab.tools``) see it: mmdet, ``configs/detection``, the embedded COCO
data."""
from pathlib import Path

from openmmlab.task import MMDetTask

from . import embedded_data

TASK = MMDetTask("detection", Path(__file__).resolve().parent.parent / "configs" / "detection", embedded_data)
