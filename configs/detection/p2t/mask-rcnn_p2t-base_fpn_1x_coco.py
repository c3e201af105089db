# Mask R-CNN 1x with a P2T-B backbone.
# Official: yuhuan-wu/P2T detection/configs (mmdet 2.x).
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-B
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 47.2
#   mask AP: 42.7
#   params (M): 55.7
#   FLOPs (G): 363
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
        model_name='p2t_base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/p2t_base.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

# official: gradient clipping at max_norm 10 for Mask R-CNN base / large only
optim_wrapper = dict(clip_grad=dict(max_norm=10, norm_type=2))
