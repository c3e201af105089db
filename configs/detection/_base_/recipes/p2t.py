# P2T's detection optimizer (official mmdet 2.x configs): AdamW lr 1e-4, weight decay 1e-4 on every
# parameter, no grad clipping (Mask R-CNN B/L rows add max_norm 10), fp32.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
