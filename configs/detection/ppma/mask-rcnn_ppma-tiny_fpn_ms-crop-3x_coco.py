# Mask R-CNN MS+3x with a PPMA-T backbone.
# Official: zhongchenzhao/PPMA detection/configs (mmdet 2.28).
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-T
#   detector: Mask R-CNN
#   schedule: MS+3x
#   box AP: -
#   mask AP: -
#   params (M): 33
#   FLOPs (G): 218
#   source: official config, no published result
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_3x.py',
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
