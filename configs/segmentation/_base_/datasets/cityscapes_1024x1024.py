# Cityscapes (19 classes), 1024x1024 crops: mmseg's cityscapes_1024x1024.py, which is PPMA's
# `cityscapes_1024x1024_repeat.py` (credited to SegMAN) without the RepeatDataset(times=500) wrapper: with
# mmengine's InfiniteSampler an iteration-based loop draws the same stream of samples without it.
# 1 image per GPU (PPMA: 8 GPUs x 1); test.py --tta uses mmseg's ratios 0.5-1.75 + flip.
_base_ = 'mmseg::_base_/datasets/cityscapes_1024x1024.py'
data_root = 'data/cityscapes'
train_dataloader = dict(batch_size=1, num_workers=4, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
