# P2T-B + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images, gradient clipping at norm 35.
# Paper row: mIoU 48.7 (ss), aAcc 82.9, mAcc 60.7; params 39.8 M; FLOPs 58.5 G (512x512).
_base_ = ['./fpn_p2t_small_512x512_80k_ade20k.py']
model = dict(backbone=dict(model_name='p2t_base', drop_path_rate=0.3,
                           init_cfg=dict(checkpoint='pretrained/p2t_base.pth')))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
