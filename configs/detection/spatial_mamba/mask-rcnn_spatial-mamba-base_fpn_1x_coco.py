# Mask R-CNN 1x with a Spatial-Mamba-B backbone.
# Official: EdwardChasel/Spatial-Mamba detection/configs/spatialmamba (mmdet 3.x).
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-B
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 50.4
#   mask AP: 45.1
#   params (M): 115
#   FLOPs (G): 494
#   source: official README
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x_warmup1k.py',
    '../_base_/recipes/spatial_mamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='spatial_mamba_base',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/spatial_mamba_base.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
