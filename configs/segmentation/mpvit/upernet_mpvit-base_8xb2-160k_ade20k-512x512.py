# MPViT-B + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images, drop path 0.4.
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-B
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 50.3
#   mIoU (ms): -
#   params (M): 105
#   FLOPs (G): 1185 (2048x512)
#   ours (M / G, 512x512): 105.30 / 298.6
# alias: upernet_mpvit_base_512x512_160k_ade20k
_base_ = ['./upernet_mpvit-small_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='mpvit_base', drop_path_rate=0.4, init_cfg=dict(checkpoint='pretrained/mpvit_base.pth')),
    decode_head=dict(in_channels=[224, 368, 480, 480]),
    auxiliary_head=dict(in_channels=480))
