# detectron2's 3x (MPViT): 270k iterations, steps at 210k / 250k (epochs ~28.5 / ~33.9; mmdet's 3x uses
# 27 / 33), warmup 1000 iterations from 0.01x.
_base_ = './schedule_1x.py'

train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
