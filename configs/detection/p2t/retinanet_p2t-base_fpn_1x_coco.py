# RetinaNet 1x with a P2T-B backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-B
#   detector: RetinaNet
#   schedule: 1x
#   box AP: 46.1
#   mask AP: -
#   params (M): 45.8
#   FLOPs (G): 344
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
        model_name='p2t_base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_base.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
