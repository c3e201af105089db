"""Detection as the shared tools (``openmmlab.tools``) see it: mmdet, ``configs/detection``, the embedded COCO
data and the paper rows of the config headers."""
from pathlib import Path

from openmmlab.task import MMDetTask

from . import config_table, embedded_data

TASK = MMDetTask("detection", Path(__file__).resolve().parent.parent / "configs" / "detection", embedded_data,
                 paper_row=config_table.parse_paper_row, aliases={"smoke": "smoke/mask-rcnn_p2t_smoke.py"})
