"""Parameters and FLOPs of segmentor configs next to the papers' (``openmmlab.flops``, shared with detection/).

    python segmentation/get_flops.py CONFIG [CONFIG ...] [--shape H [W]] [--cfg-options KEY=VALUE ...]
                                     [--show-unsupported]

Batch 1, input 512 x 512 by default (UperNet papers in the Swin convention quote 512 x 2048: ``--shape 512
2048``), eval mode, mmseg's ``tensor`` mode: backbone, neck and decode head (the auxiliary head only trains;
its parameters are in the count). One multiply-add is one FLOP (fvcore); the custom ops are counted by the
handles ``models.flop_count_handles()`` provides; element-wise ops are not counted, as in fvcore.
"""
import functools

from openmmlab.tools import get_flops
from segmentation.task import TASK

main = functools.partial(get_flops.main, TASK)

if __name__ == "__main__":
    main()
