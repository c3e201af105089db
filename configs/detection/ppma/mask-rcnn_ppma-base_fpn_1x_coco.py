# Mask R-CNN 1x with a PPMA-B backbone.
# Official: zhongchenzhao/PPMA detection/configs (mmdet 2.28).
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-B
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 51.06
#   mask AP: 45.53
#   params (M): 73
#   FLOPs (G): 374
#   source: official log, final epoch (= README)
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/recipes/ppma.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='ppma_base',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ppma_base.pth')),
    neck=dict(in_channels=[80, 160, 320, 512]))
