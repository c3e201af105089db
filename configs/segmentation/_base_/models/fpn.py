# Semantic FPN (Kirillov et al.), as P2T: mmseg's `fpn_r50.py` (FPN neck of 256 channels on 4 levels,
# FPNHead of 128 channels, dropout 0.1, SyncBN, no auxiliary head) with the ResNet replaced by
# `VisionBackbone` (openmmlab/backbone.py) and 150 classes. train.py / test.py switch SyncBN to BN on a CPU.
_base_ = 'mmseg::_base_/models/fpn_r50.py'
data_preprocessor = dict(size=(512, 512))
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(_delete_=True, type='VisionBackbone', model_name=None, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))
