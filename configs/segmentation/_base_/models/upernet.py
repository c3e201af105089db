# UperNet (UPerHead + FCN auxiliary head on stage 3), as every paper here: mmseg's `upernet_swin.py`
# (channels 512, pool scales (1, 2, 3, 6), dropout 0.1, SyncBN; auxiliary FCN 256 channels, loss weight 0.4)
# with the Swin backbone replaced by `VisionBackbone` (openmmlab/backbone.py) and 150 classes. Family configs
# fill in the model name and the in_channels. train.py / test.py switch SyncBN to BN on a CPU.
_base_ = 'mmseg::_base_/models/upernet_swin.py'
data_preprocessor = dict(size=(512, 512))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(_delete_=True, type='VisionBackbone', model_name=None, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
