# Smoke run: Mask R-CNN (fewer RoIs) with a one-block-per-stage PaCa-T (conv clustering 100/100/100/0, random init) on
# the embedded tiny dataset, one epoch at ~256 px, PaCa-ViT's optimizer recipe.
_base_ = [
    '../_base_/models/mask_rcnn_fpn_light.py',
    '../_base_/datasets/embedded_coco_instance.py',
    '../_base_/schedules/smoke.py',
    '../_base_/recipes/pacavit.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(model_name='pacavit_tiny_p2cconv_100_0', depths=(1, 1, 1, 1)),
    neck=dict(in_channels=[96, 192, 320, 384]))
default_hooks = dict(logger=dict(interval=1))
