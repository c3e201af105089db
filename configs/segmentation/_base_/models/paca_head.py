# PaCa-ViT's segmentation head (`PaCaSegHead`, openmmlab/paca_head.py): patch-to-cluster attention with
# one cluster per class and an auxiliary cross-entropy (weight 0.4) on the cluster logits; channels 256,
# dropout 0.1, SyncBN, whole-image inference. The official `PaCaEncoderDecoder` only re-prefixes the two
# loss dicts; here the head returns one dict and mmseg's EncoderDecoder trains it.
norm_cfg = dict(type='SyncBN', requires_grad=True)  # train.py / test.py switch it to BN on CPU
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='VisionBackbone', model_name=None, out_indices=(0, 1, 2, 3)),
    decode_head=dict(
        type='PaCaSegHead',
        in_channels=[96, 192, 320, 384],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True, use_sigmoid=False, loss_weight=1.0),
        aux_loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True, use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
