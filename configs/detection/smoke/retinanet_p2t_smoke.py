# Smoke run: RetinaNet with a one-block-per-stage P2T-T (random init) on the embedded tiny dataset (bbox
# metrics), one epoch at ~256 px, P2T's optimizer recipe.
_base_ = [
    '../_base_/models/retinanet_fpn.py',
    '../_base_/datasets/embedded_coco_detection.py',
    '../_base_/schedules/smoke.py',
    '../_base_/recipes/p2t.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(model_name='p2t_tiny', depths=(1, 1, 1, 1)),
    neck=dict(in_channels=[48, 96, 240, 384]),
    bbox_head=dict(num_classes=3),
    # after a dozen steps every focal-loss score is still near its 0.01 prior: keep them, so that the
    # evaluation has detections to score (the default threshold 0.05 leaves none and no metrics)
    test_cfg=dict(score_thr=0.0, max_per_img=20))
default_hooks = dict(logger=dict(interval=1))
