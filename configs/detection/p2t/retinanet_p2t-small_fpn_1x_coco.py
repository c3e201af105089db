# RetinaNet 1x with a P2T-S backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-S
#   detector: RetinaNet
#   schedule: 1x
#   box AP: 44.4
#   mask AP: -
#   params (M): 33.8
#   FLOPs (G): 260
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
        model_name='p2t_small',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_small.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
