# PaCa-ViT-B (conv clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations, drop path 0.5.
# Paper row: mIoU 50.39 (ss); params 48.0 M; FLOPs 68.5 G.
_base_ = ['./pacahead_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(
    backbone=dict(model_name='pacavit_base_p2cconv_100_0', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_base_p2cconv_100_0.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 512]))
