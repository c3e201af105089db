# 40 iterations for the smoke configs (CPU, embedded data): AdamW lr 2e-3, 5 warm-up iterations, poly decay;
# evaluation and a checkpoint at the end.
_base_ = ['./schedule_160k.py']
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=5, end=40),
]
train_cfg = dict(max_iters=40, val_interval=40)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=40))
randomness = dict(seed=0)
