# MPViT-B + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images, drop path 0.4.
# Paper row: mIoU 50.3 (ss); params 105 M; FLOPs 1185 G (2048x512, Swin convention).
_base_ = ['./upernet_mpvit_small_512x512_160k_ade20k.py']
model = dict(
    backbone=dict(model_name='mpvit_base', drop_path_rate=0.4, init_cfg=dict(checkpoint='pretrained/mpvit_base.pth')),
    decode_head=dict(in_channels=[224, 368, 480, 480]),
    auxiliary_head=dict(in_channels=480))
