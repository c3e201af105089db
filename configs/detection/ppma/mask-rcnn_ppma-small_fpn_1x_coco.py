# Mask R-CNN 1x with a PPMA-S backbone.
# Official: zhongchenzhao/PPMA detection/configs (mmdet 2.28).
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-S
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 49.24
#   mask AP: 43.76
#   params (M): 46
#   FLOPs (G): 263
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
        model_name='ppma_small',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ppma_small.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
