# P2T-S + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images.
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-S
#   method: Semantic FPN
#   dataset: ADE20K 512x512
#   schedule: 80k
#   mIoU (ss): 46.7
#   mIoU (ms): -
#   params (M): 27.8
#   FLOPs (G): 42.7 (512x512)
#   ours (M / G, 512x512): 27.83 / 43.8
#   note: aAcc 82.0, mAcc 58.4
# alias: fpn_p2t_small_512x512_80k_ade20k
_base_ = ['./fpn_p2t-tiny_8xb2-80k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='p2t_small', drop_path_rate=0.1, init_cfg=dict(checkpoint='pretrained/p2t_small.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
