# Mask R-CNN MS+1x with a PaCa-S ablation: clusters 2/2/2/0 backbone.
# Official: iVMCL/PaCaViT detection/configs/paca_vit/mask_rcnn_1x (mmdet 3.x).
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-S ablation: clusters 2/2/2/0
#   detector: Mask R-CNN
#   schedule: MS+1x
#   box AP: 45.5
#   mask AP: 41.1
#   params (M): -
#   FLOPs (G): -
#   source: official README (cluster ablation table, small model)
_base_ = [
    '../_base_/models/mask_rcnn_fpn.py',
    '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/recipes/pacavit.py',
    '../_base_/default_runtime.py',
]

# drop_path_rate 0.1 for every PaCa detector (base included), layer_scale off (the default)
model = dict(
    backbone=dict(
        model_name='pacavit_small_p2cconv_2_0',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/pacavit_small_p2cconv_2_0.pth')),
    neck=dict(in_channels=[96, 192, 320, 384]))
