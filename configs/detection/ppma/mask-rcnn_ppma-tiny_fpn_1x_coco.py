# Mask R-CNN 1x with a PPMA-T backbone.
# Official: zhongchenzhao/PPMA detection/configs (mmdet 2.28).
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-T
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 47.02
#   mask AP: 42.16
#   params (M): 33
#   FLOPs (G): 218
#   source: official log, final epoch (README: 47.1 / 42.4)
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/recipes/ppma.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='ppma_tiny',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ppma_tiny.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
