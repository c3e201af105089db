# RetinaNet 1x with a MPViT-T backbone.
# Official: youngwanLEE/MPViT detectron2/configs (detectron2; ported to mmdet 3.x).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-T
#   detector: RetinaNet
#   schedule: 1x
#   box AP: 41.8
#   mask AP: -
#   params (M): 17
#   FLOPs (G): 196
#   source: official README (detectron2)
_base_ = [
    '../_base_/models/retinanet_fpn_d2.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x_d2.py',
    '../_base_/recipes/mpvit.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='mpvit_tiny',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mpvit_tiny.pth')),
    neck=dict(in_channels=[176, 216, 216]))
