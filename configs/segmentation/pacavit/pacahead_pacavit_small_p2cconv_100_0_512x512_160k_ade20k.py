# PaCa-ViT-S (conv clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations.
# Paper row: mIoU 48.3 (ss); params 23.2 M; FLOPs 47.2 G.
_base_ = ['./pacahead_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cconv_100_0',
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cconv_100_0.pth')))
