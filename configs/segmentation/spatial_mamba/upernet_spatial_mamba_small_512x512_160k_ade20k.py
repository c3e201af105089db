# Spatial-Mamba-S + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper row: mIoU 50.6 (ss) / 51.4 (ms); params 73 M; FLOPs 992 G (2048x512, Swin convention).
_base_ = ['./upernet_spatial_mamba_tiny_512x512_160k_ade20k.py']
model = dict(backbone=dict(model_name='spatial_mamba_small',
                           init_cfg=dict(checkpoint='pretrained/spatialmamba_small.pth')))
