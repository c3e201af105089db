# Smoke run: Mask R-CNN (fewer RoIs) with a one-block-per-stage PPMA-T (out-norms on, random init) on the embedded tiny
# dataset, one epoch at ~256 px, PPMA's optimizer recipe. Runs end to end on a CPU in about a minute:
#   bash detection/dist_train.sh configs/detection/smoke/mask-rcnn_ppma_smoke.py 2
_base_ = [
    '../_base_/models/mask_rcnn_fpn_light.py',
    '../_base_/datasets/embedded_coco_instance.py',
    '../_base_/schedules/smoke.py',
    '../_base_/recipes/ppma.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(model_name='ppma_tiny', depths=(1, 1, 1, 1), out_norm=True),
    neck=dict(in_channels=[64, 128, 256, 512]))
default_hooks = dict(logger=dict(interval=1))
