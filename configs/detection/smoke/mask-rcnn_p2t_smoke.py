# Smoke run: Mask R-CNN (fewer RoIs) with a one-block-per-stage P2T-T (random init) on the embedded tiny dataset, one
# epoch at ~256 px, P2T's optimizer recipe.
# alias: smoke
_base_ = [
    '../_base_/models/mask_rcnn_fpn_light.py',
    '../_base_/datasets/embedded_coco_instance.py',
    '../_base_/schedules/smoke.py',
    '../_base_/recipes/p2t.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(model_name='p2t_tiny', depths=(1, 1, 1, 1)),
    neck=dict(in_channels=[48, 96, 240, 384]))
default_hooks = dict(logger=dict(interval=1))
