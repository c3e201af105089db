# P2T-T + Semantic FPN, ADE20K 512x512, 80k iterations, 8 GPUs x 2 images.
# Official: segmentation/configs/sem_fpn_p2t_t_ade20k_80k.py (mmseg >= 0.12).
# Test: P2T's AlignResize (keep-ratio resize to (2048, 512), then stretched to multiples of 32), whole image.
# The official backbone kept an unused 1000-way classifier (hence find_unused_parameters=True); ours has none.
#
# paper-row:
#   paper: P2T (Wu et al., TPAMI 2022)
#   backbone: P2T-T
#   method: Semantic FPN
#   dataset: ADE20K 512x512
#   schedule: 80k
#   mIoU (ss): 43.4
#   mIoU (ms): -
#   params (M): 15.4
#   FLOPs (G): 31.6 (512x512)
#   ours (M / G, 512x512): 15.41 / 32.4
#   note: aAcc 80.8, mAcc 54.5
# alias: fpn_p2t_tiny_512x512_80k_ade20k
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
