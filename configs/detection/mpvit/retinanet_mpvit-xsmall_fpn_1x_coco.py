# RetinaNet 1x with a MPViT-XS backbone.
# Official: youngwanLEE/MPViT detectron2/configs (detectron2; ported to mmdet 3.x).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-XS
#   detector: RetinaNet
#   schedule: 1x
#   box AP: 43.8
#   mask AP: -
#   params (M): 20
#   FLOPs (G): 211
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
        model_name='mpvit_xsmall',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mpvit_xsmall.pth')),
    neck=dict(in_channels=[192, 256, 256]))
