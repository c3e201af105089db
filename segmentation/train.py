"""Train a segmentor from an mmseg 1.x config (mmengine Runner), on GPUs or on a CPU.

    python segmentation/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
    bash segmentation/dist_train.sh CONFIG NUM_PROCS [same options]

The flags are those of mmseg's ``tools/train.py``; the code is ``openmmlab.tools.train``, shared with
detection/. CONFIG is a path or a config name under configs/segmentation (``smoke`` =
smoke/upernet_p2t_smoke.py; the old config names still resolve). A dataset root named ``embedded_ade`` gets the
embedded tiny dataset generated on first use; any other missing dataset stops the run with the path it
expected.
"""
import functools
import sys

from openmmlab.tools import train
from segmentation.task import TASK

main = functools.partial(train.main, TASK)

if __name__ == "__main__":
    sys.exit(main())  # 128 + signal after a SIGTERM / SIGINT stop (a checkpoint was written)
