# Smoke test: Semantic FPN on a tiny P2T on the embedded ADE20K-style data, with P2T's AlignResize at test
# time.   bash segmentation/dist_train.sh configs/segmentation/smoke/fpn_p2t_smoke.py 2
# alias: fpn_smoke
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/embedded_ade.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_smoke.py',
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=(256, 128), keep_ratio=True, size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(model_name='p2t_tiny', embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                  num_heads=(1, 1, 1, 1), drop_path_rate=0.0),
    neck=dict(in_channels=[16, 32, 48, 64], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=16, num_classes=4))
