# Mask R-CNN MS+3x with a Spatial-Mamba-S backbone.
# Official: EdwardChasel/Spatial-Mamba detection/configs/spatialmamba (mmdet 3.x).
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-S
#   detector: Mask R-CNN
#   schedule: MS+3x
#   box AP: 50.5
#   mask AP: 44.6
#   params (M): 63
#   FLOPs (G): 315
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
        model_name='spatial_mamba_small',
        out_norm=True,  # the official downstream backbone's output LayerNorms outnorm{i}
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/spatial_mamba_small.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
