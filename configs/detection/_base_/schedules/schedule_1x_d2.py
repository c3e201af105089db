# detectron2's 1x (MPViT): 90k iterations of 16 images, steps at 60k / 80k, linear warmup over 1000
# iterations from 0.01x. In epochs of COCO train2017 (118k images, 7.3k iterations of 16) the steps fall at
# ~8.2 and ~10.9 epochs: mmdet's epochs 8 and 11.
_base_ = './schedule_1x.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
