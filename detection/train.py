"""Train a detector from an mmdet 3.x config (mmengine Runner), on one process or under torchrun.

    python detection/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                              [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
    bash detection/dist_train.sh CONFIG NUM_PROCS [same options]

The flags are those of mmdet's ``tools/train.py``; the code is ``openmmlab.tools.train``, shared with
segmentation/. CONFIG is a path or a config name under configs/detection (``smoke`` =
smoke/mask-rcnn_p2t_smoke.py). A dataset root named ``embedded_coco`` gets the embedded tiny dataset
generated on first use; any other missing dataset stops the run with the path it expected.
"""
import functools
import sys

from detection.task import TASK
from openmmlab.tools import train

main = functools.partial(train.main, TASK)

if __name__ == "__main__":
    sys.exit(main())  # 128 + signal after a SIGTERM / SIGINT stop (a checkpoint was written)
