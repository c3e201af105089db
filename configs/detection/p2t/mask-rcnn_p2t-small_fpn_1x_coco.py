# Mask R-CNN 1x with a P2T-S backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-S
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 45.5
#   mask AP: 41.4
#   params (M): 43.7
#   FLOPs (G): 279
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
        model_name='p2t_small',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_small.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
