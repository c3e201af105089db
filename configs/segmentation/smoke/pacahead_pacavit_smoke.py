# Smoke test: the PaCa segmentation head on a tiny PaCa-ViT (4 blocks of width 16-64, 8 clusters in stages
# 1-3) on the embedded ADE20K-style data.
#   bash segmentation/dist_train.sh configs/segmentation/smoke/pacahead_pacavit_smoke.py 2
# alias: pacahead_smoke
_base_ = [
    '../_base_/models/paca_head.py', '../_base_/datasets/embedded_ade.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_smoke.py',
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(model_name='pacavit_tiny_p2cconv_100_0', embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                  num_heads=(1, 1, 2, 2), num_clusters=(8, 8, 8, 0), drop_path_rate=0.0),
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=32, num_classes=4))
