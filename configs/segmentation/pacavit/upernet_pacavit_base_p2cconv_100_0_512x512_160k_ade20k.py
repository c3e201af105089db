# PaCa-ViT-B (conv clustering, 100-100-100-0) + UperNet, ADE20K 512x512, 160k iterations.
# Paper row: mIoU 49.67 (ss); params 77.2 M; FLOPs 264.1 G. Drop path 0.1 (0.5 only with the PaCa head).
_base_ = ['./upernet_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(
    backbone=dict(model_name='pacavit_base_p2cconv_100_0',
                  init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_base_p2cconv_100_0.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 512]),
    auxiliary_head=dict(in_channels=384))
