# RetinaNet 1x with a P2T-L backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-L
#   detector: RetinaNet
#   schedule: 1x
#   box AP: 47.2
#   mask AP: -
#   params (M): 64.4
#   FLOPs (G): 449
#   source: official README
_base_ = [
    '../_base_/models/retinanet_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/recipes/p2t.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='p2t_large',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_large.pth')),
    neck=dict(in_channels=[64, 128, 320, 640]))
