# P2T-S + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images.
# Paper row: mIoU 46.7 (ss), aAcc 82.0, mAcc 58.4; params 27.8 M; FLOPs 42.7 G (512x512).
_base_ = ['./fpn_p2t_tiny_512x512_80k_ade20k.py']
model = dict(
    backbone=dict(model_name='p2t_small', drop_path_rate=0.1, init_cfg=dict(checkpoint='pretrained/p2t_small.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
