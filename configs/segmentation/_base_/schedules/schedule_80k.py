# 80k iterations, AdamW lr 1e-4, weight decay 1e-4, poly decay (power 0.9) to 1e-6, no warm-up --
# P2T's Semantic FPN recipe (mmseg 0.x `lr_config=dict(policy='poly', power=0.9, min_lr=1e-6)`).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))  # no clipping (P2T-B/L: 35)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=80000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
