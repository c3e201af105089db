# P2T-T + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images.
# Paper row: mIoU 43.4 (ss; no ms reported), aAcc 80.8, mAcc 54.5; params 15.4 M; FLOPs 31.6 G (512x512).
# Official: segmentation/configs/sem_fpn_p2t_t_ade20k_80k.py (mmseg >= 0.12).
# Test: P2T's AlignResize (keep-ratio resize to (2048, 512), then stretched to multiples of 32), whole image.
# The official backbone kept an unused 1000-way classifier (hence find_unused_parameters=True); ours has none.
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
model = dict(
    backbone=dict(model_name='p2t_tiny', drop_path_rate=0.1,
                  init_cfg=dict(type='Pretrained', checkpoint='pretrained/p2t_tiny.pth')),
    neck=dict(in_channels=[48, 96, 240, 384]),
    decode_head=dict(num_classes=150))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=(2048, 512), keep_ratio=True, size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
env_cfg = dict(cudnn_benchmark=False)
