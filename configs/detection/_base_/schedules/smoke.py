# Smoke runs: one epoch on the embedded dataset, validation at its end, lr warmup over 2 iterations.
_base_ = './schedule_1x.py'

train_cfg = dict(max_epochs=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
]
