# 1x: 12 epochs, lr x0.1 after epochs 8 and 11, linear warmup over the first 500 iterations from 0.001x
# (mmdet's 1x; PPMA, P2T and PaCa-ViT use it). The optimizer comes from the family recipe.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
# the recipes are for 16 images per step (8 GPUs x 2); `train.py --auto-scale-lr` rescales the lr linearly
auto_scale_lr = dict(enable=False, base_batch_size=16)
