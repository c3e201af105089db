# Smoke run: Mask R-CNN (fewer RoIs) with a one-block-per-stage Spatial-Mamba-T (out-norms on, random init) on the
# embedded tiny dataset, one epoch at ~256 px, Spatial-Mamba's optimizer recipe.
_base_ = [
    '../_base_/models/mask_rcnn_fpn_light.py',
    '../_base_/datasets/embedded_coco_instance.py',
    '../_base_/schedules/smoke.py',
    '../_base_/recipes/spatial_mamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(model_name='spatial_mamba_tiny', depths=(1, 1, 1, 1), out_norm=True),
    neck=dict(in_channels=[64, 128, 256, 512]))
default_hooks = dict(logger=dict(interval=1))
