# PaCa-ViT's detection optimizer (official mmdet 3.x configs): AdamW lr 1e-4, wd 0.05, no weight decay for
# names containing 'norm'. The official runs add `--amp` (pass it to detection/train.py) and
# `--auto-scale-lr` (no change at the default 8 GPUs x 2 images).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
