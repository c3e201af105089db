# Spatial-Mamba-B + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper row: mIoU 51.8 (ss) / 52.6 (ms); params 127 M; FLOPs 1176 G (2048x512, Swin convention).
_base_ = ['./upernet_spatial_mamba_tiny_512x512_160k_ade20k.py']
model = dict(
    backbone=dict(model_name='spatial_mamba_base', init_cfg=dict(checkpoint='pretrained/spatialmamba_base.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
