# PPMA-B + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official log: 52.26 (ss).
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-B
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 52.3
#   mIoU (ms): 53.0
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 83.12 / 271.2
#   note: params / FLOPs not in the PPMA README
# alias: upernet_ppma_base_512x512_160k_ade20k
_base_ = ['./upernet_ppma-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='ppma_base', drop_path_rate=0.4, init_cfg=dict(checkpoint='pretrained/ppma_base.pth')),
    decode_head=dict(in_channels=[80, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
