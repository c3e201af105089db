# 1x with mmdet's Swin warmup (1000 iterations from 0.001x): Spatial-Mamba inherits mmdet's Swin configs.
_base_ = './schedule_1x.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
