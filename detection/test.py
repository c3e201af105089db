"""Evaluate a detector checkpoint on the config's test set (COCO bbox / segm metrics through mmdet).

    python detection/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show] [--show-dir DIR]
                             [--wait-time S] [--tta] [--cfg-options KEY=VALUE ...] [--launcher ...]
    bash detection/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [same options]

The flags are those of mmdet's ``tools/test.py``; the code is ``openmmlab.tools.test``, shared with
segmentation/. CHECKPOINT is one of our detector checkpoints or an official one of the mmdet-based papers
(backbone keys in the paper's layout are mapped while loading), loaded strictly. ``--tta`` wraps the model in
mmdet's DetTTAModel with the config's flip ``tta_pipeline`` (box detectors: DetTTAModel merges no masks);
``--out`` dumps the raw predictions to a .pkl file.
"""
import functools

from detection.task import TASK
from openmmlab.tools import test

main = functools.partial(test.main, TASK)

if __name__ == "__main__":
    main()
