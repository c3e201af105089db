"""Evaluate a segmentor checkpoint (ours or a paper's official one) on a config's test set.

    python segmentation/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR] [--show] [--show-dir DIR]
                                [--wait-time S] [--tta | --aug-test] [--cfg-options KEY=VALUE ...] [--launcher ...]
    bash segmentation/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [same options]

The flags are those of mmseg's ``tools/test.py``; the code is ``openmmlab.tools.test``, shared with
detection/. ``--tta`` (alias ``--aug-test``, mmseg 0.x's name) evaluates multi-scale + flip: the config's
``tta_pipeline`` (the paper's scales x {no flip, flip}) with mmseg's ``SegTTAModel`` averaging the softmax
outputs; a config may set ``tta_test_cfg`` (e.g. whole-image instead of sliding-window inference, as PPMA's
multi-scale runs). ``--out DIR`` also writes the predicted label maps. The checkpoint is loaded strictly
(official backbone key layouts are mapped).
"""
import functools

from openmmlab.tools import test
from segmentation.task import TASK

main = functools.partial(test.main, TASK)

if __name__ == "__main__":
    main()
