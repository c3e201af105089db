# Mask R-CNN MS+3x with a MPViT-S backbone.
# Official: youngwanLEE/MPViT detectron2/configs (detectron2; ported to mmdet 3.x).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-S
#   detector: Mask R-CNN
#   schedule: MS+3x
#   box AP: 48.4
#   mask AP: 43.9
#   params (M): 43
#   FLOPs (G): 268
#   source: official README (detectron2)
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_3x_d2.py',
    '../_base_/recipes/mpvit.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='mpvit_small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mpvit_small.pth')),
    neck=dict(in_channels=[128, 216, 288, 288]))
