# P2T-L + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images, gradient clipping at norm 35.
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-L
#   method: Semantic FPN
#   dataset: ADE20K 512x512
#   schedule: 80k
#   mIoU (ss): 49.4
#   mIoU (ms): -
#   params (M): 58.1
#   FLOPs (G): 77.7 (512x512)
#   ours (M / G, 512x512): 58.14 / 79.4
#   note: aAcc 83.3, mAcc 61.9
# alias: fpn_p2t_large_512x512_80k_ade20k
_base_ = ['./fpn_p2t-base_8xb2-80k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='p2t_large', drop_path_rate=0.3, init_cfg=dict(checkpoint='pretrained/p2t_large.pth')),
    neck=dict(in_channels=[64, 128, 320, 640]))
