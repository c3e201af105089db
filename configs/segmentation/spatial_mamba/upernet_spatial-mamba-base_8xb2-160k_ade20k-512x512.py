# Spatial-Mamba-B + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-B
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 51.8
#   mIoU (ms): 52.6
#   params (M): 127
#   FLOPs (G): 1176 (2048x512)
#   ours (M / G, 512x512): 127.40 / 294.1
# alias: upernet_spatial_mamba_base_512x512_160k_ade20k
_base_ = ['./upernet_spatial-mamba-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='spatial_mamba_base', init_cfg=dict(checkpoint='pretrained/spatialmamba_base.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
