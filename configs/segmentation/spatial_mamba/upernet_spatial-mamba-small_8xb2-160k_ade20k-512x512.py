# Spatial-Mamba-S + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-S
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 50.6
#   mIoU (ms): 51.4
#   params (M): 73
#   FLOPs (G): 992 (2048x512)
#   ours (M / G, 512x512): 72.87 / 247.9
# alias: upernet_spatial_mamba_small_512x512_160k_ade20k
_base_ = ['./upernet_spatial-mamba-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(model_name='spatial_mamba_small',
                           init_cfg=dict(checkpoint='pretrained/spatialmamba_small.pth')))
