# Smoke run: Mask R-CNN (fewer RoIs) with a one-layer-per-path MPViT-T (random init) on the embedded tiny dataset, one
# epoch at ~256 px, MPViT's solver (grad clip 1.0; SyncBN only on GPUs).
_base_ = [
    '../_base_/models/mask_rcnn_fpn_light.py',
    '../_base_/datasets/embedded_coco_instance.py',
    '../_base_/schedules/smoke.py',
    '../_base_/recipes/mpvit.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(model_name='mpvit_tiny', num_layers=(1, 1, 1, 1)),
    neck=dict(in_channels=[96, 176, 216, 216]))
default_hooks = dict(logger=dict(interval=1))
