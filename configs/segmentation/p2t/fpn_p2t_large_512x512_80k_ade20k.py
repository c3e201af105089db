# P2T-L + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images, gradient clipping at norm 35.
# Paper row: mIoU 49.4 (ss), aAcc 83.3, mAcc 61.9; params 58.1 M; FLOPs 77.7 G (512x512).
_base_ = ['./fpn_p2t_base_512x512_80k_ade20k.py']
model = dict(
    backbone=dict(model_name='p2t_large', drop_path_rate=0.3, init_cfg=dict(checkpoint='pretrained/p2t_large.pth')),
    neck=dict(in_channels=[64, 128, 320, 640]))
