# PPMA-B + UperNet, Cityscapes 1024x1024, 160k iterations, 8 GPUs x 1 image.
# Official log: 83.91 (ss). Sliding window 1024, stride 341.
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-B
#   method: UperNet
#   dataset: Cityscapes 1024x1024
#   schedule: 160k
#   mIoU (ss): 83.9
#   mIoU (ms): 84.3
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 83.02 / 270.1
#   note: params / FLOPs not in the PPMA README
# alias: upernet_ppma_base_1024x1024_160k_cityscapes
_base_ = ['./upernet_ppma-small_8xb1-160k_cityscapes-1024x1024.py']
model = dict(
    backbone=dict(model_name='ppma_base', drop_path_rate=0.4, init_cfg=dict(checkpoint='pretrained/ppma_base.pth')),
    decode_head=dict(in_channels=[80, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
