# Mask R-CNN 1x with a P2T-L backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-L
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 48.3
#   mask AP: 43.5
#   params (M): 74.0
#   FLOPs (G): 467
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
        model_name='p2t_large',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_large.pth')),
    neck=dict(in_channels=[64, 128, 320, 640]))

# official: gradient clipping at max_norm 10 for Mask R-CNN base / large only
optim_wrapper = dict(clip_grad=dict(max_norm=10, norm_type=2))
