# Mask R-CNN MS+3x with a Spatial-Mamba-T backbone.
# Official: EdwardChasel/Spatial-Mamba detection/configs/spatialmamba (mmdet 3.x).
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-T
#   detector: Mask R-CNN
#   schedule: MS+3x
#   box AP: 49.3
#   mask AP: 43.6
#   params (M): 46
#   FLOPs (G): 261
#   source: official README
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_3x_warmup1k.py',
    '../_base_/recipes/spatial_mamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        model_name='spatial_mamba_tiny',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/spatial_mamba_tiny.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
