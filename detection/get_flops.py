"""Parameters and FLOPs of detector configs next to the papers' (``openmmlab.flops``, shared with segmentation/).

    python detection/get_flops.py CONFIG [CONFIG ...] [--shape H [W]] [--cfg-options KEY=VALUE ...]
                                  [--show-unsupported]

Batch 1, input 1280 x 800 by default (mmdet 2.x's order, as the papers' tools), eval mode, mmdet's ``tensor``
mode: backbone, neck and RPN / RetinaNet heads; for two-stage detectors the box head on the RPN's (up to
1000) proposals and the mask head on the first 100 of them. One multiply-add is one FLOP (fvcore); the
custom ops are counted by the handles ``models.flop_count_handles()`` provides; NMS, RoIAlign and
element-wise ops are listed (``--show-unsupported``), not counted. The paper values come from the config's
``paper-row`` block.
"""
import functools

from detection.task import TASK
from openmmlab.tools import get_flops

main = functools.partial(get_flops.main, TASK)

if __name__ == "__main__":
    main()
