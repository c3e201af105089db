# P2T-B + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images, gradient clipping at norm 35.
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-B
#   method: Semantic FPN
#   dataset: ADE20K 512x512
#   schedule: 80k
#   mIoU (ss): 48.7
#   mIoU (ms): -
#   params (M): 39.8
#   FLOPs (G): 58.5 (512x512)
#   ours (M / G, 512x512): 39.82 / 60.2
#   note: aAcc 82.9, mAcc 60.7
# alias: fpn_p2t_base_512x512_80k_ade20k
_base_ = ['./fpn_p2t-small_8xb2-80k_ade20k-512x512.py']
model = dict(backbone=dict(model_name='p2t_base', drop_path_rate=0.3,
                           init_cfg=dict(checkpoint='pretrained/p2t_base.pth')))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
