# PPMA-S + UperNet, Cityscapes 1024x1024, 160k iterations, 8 GPUs x 1 image.
# Official log: 83.68 (ss). Sliding window 1024, stride 341.
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-S
#   method: UperNet
#   dataset: Cityscapes 1024x1024
#   schedule: 160k
#   mIoU (ss): 83.7
#   mIoU (ms): 84.0
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 55.63 / 237.8
#   note: params / FLOPs not in the PPMA README
# alias: upernet_ppma_small_1024x1024_160k_cityscapes
_base_ = ['./upernet_ppma-tiny_8xb1-160k_cityscapes-1024x1024.py']
model = dict(
    backbone=dict(model_name='ppma_small', drop_path_rate=0.15, init_cfg=dict(checkpoint='pretrained/ppma_small.pth')),
    test_cfg=dict(stride=(341, 341)))
