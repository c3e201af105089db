# Mask R-CNN MS+3x with a MPViT-B backbone.
# Official: youngwanLEE/MPViT detectron2/configs (detectron2; ported to mmdet 3.x).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-B
#   detector: Mask R-CNN
#   schedule: MS+3x
#   box AP: 49.5
#   mask AP: 44.5
#   params (M): 95
#   FLOPs (G): 503
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
        model_name='mpvit_base',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mpvit_base.pth')),
    neck=dict(in_channels=[224, 368, 480, 480]))
