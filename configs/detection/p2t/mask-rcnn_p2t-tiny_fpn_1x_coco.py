# Mask R-CNN 1x with a P2T-T backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-T
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 43.3
#   mask AP: 39.6
#   params (M): 31.3
#   FLOPs (G): 225
#   source: official README
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/recipes/p2t.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='p2t_tiny',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_tiny.pth')),
    neck=dict(in_channels=[48, 96, 240, 384]))
