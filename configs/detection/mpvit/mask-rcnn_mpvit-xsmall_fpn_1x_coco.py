# Mask R-CNN 1x with a MPViT-XS backbone.
# Official: youngwanLEE/MPViT detectron2/configs (detectron2; ported to mmdet 3.x).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-XS
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 44.2
#   mask AP: 40.4
#   params (M): 30
#   FLOPs (G): 231
#   source: official README (detectron2)
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x_d2.py',
    '../_base_/recipes/mpvit.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='mpvit_xsmall',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mpvit_xsmall.pth')),
    neck=dict(in_channels=[128, 192, 256, 256]))
