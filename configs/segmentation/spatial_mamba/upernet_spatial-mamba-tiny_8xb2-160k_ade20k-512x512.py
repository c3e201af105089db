# Spatial-Mamba-T + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official: segmentation/configs/spatialmamba/upernet_spatialmamba_4xb4-160k_ade20k-512x512_tiny.py.
# AdamW wd 0.01, no decay for norms; whole-image test; multi-scale (--tta) with ratios
# 0.75 / 1.0 / 1.25 + flip (the official TTA scales).
#
# paper-row:
#   paper: Spatial-Mamba (Xiao et al., ICLR 2025)
#   backbone: Spatial-Mamba-T
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 48.6
#   mIoU (ms): 49.4
#   params (M): 57
#   FLOPs (G): 936 (2048x512)
#   ours (M / G, 512x512): 56.54 / 234.1
# alias: upernet_spatial_mamba_tiny_512x512_160k_ade20k
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py',
]
model = dict(
    backbone=dict(
        model_name='spatial_mamba_tiny', out_norm=True,  # official downstream backbone: outnorm{i}
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/spatialmamba_tiny.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'norm': dict(decay_mult=0.0),
    'absolute_pos_embed': dict(decay_mult=0.0),
    'relative_position_bias_table': dict(decay_mult=0.0),
}))
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')],
    ]),
]
