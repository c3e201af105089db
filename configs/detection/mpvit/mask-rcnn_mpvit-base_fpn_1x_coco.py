# Mask R-CNN 1x with a MPViT-B backbone.
# Official: youngwanLEE/MPViT detectron2/configs (detectron2; ported to mmdet 3.x).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-B
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 48.2
#   mask AP: 43.5
#   params (M): 95
#   FLOPs (G): 503
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
        model_name='mpvit_base',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mpvit_base.pth')),
    neck=dict(in_channels=[224, 368, 480, 480]))
