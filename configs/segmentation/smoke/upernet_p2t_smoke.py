# Smoke test: UperNet on a tiny P2T (4 blocks of width 16-64) on the embedded ADE20K-style data
# (segmentation/embedded_data.py, generated on first use). Trains and evaluates on a CPU in about a minute:
#   bash segmentation/dist_train.sh configs/segmentation/smoke/upernet_p2t_smoke.py 2
# No paper row: this config checks the machinery; its mIoU only has to appear.
# alias: upernet_smoke
# alias: smoke
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/embedded_ade.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_smoke.py',
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(model_name='p2t_tiny', embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                  num_heads=(1, 1, 1, 1), drop_path_rate=0.0),
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=32, num_classes=4),
    auxiliary_head=dict(in_channels=48, channels=16, num_classes=4))
