# Mask R-CNN 1x with a Spatial-Mamba-S backbone.
# Official: EdwardChasel/Spatial-Mamba detection/configs/spatialmamba (mmdet 3.x).
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-S
#   detector: Mask R-CNN
#   schedule: 1x
#   box AP: 49.2
#   mask AP: 44.0
#   params (M): 63
#   FLOPs (G): 315
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
        model_name='spatial_mamba_small',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/spatial_mamba_small.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
