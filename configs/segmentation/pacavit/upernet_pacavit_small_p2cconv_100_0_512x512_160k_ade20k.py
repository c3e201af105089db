# PaCa-ViT-S (conv clustering, 100-100-100-0) + UperNet, ADE20K 512x512, 160k iterations.
# Paper row: mIoU 47.6 (ss); params 51.4 M; FLOPs 242.7 G.
_base_ = ['./upernet_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cconv_100_0',
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cconv_100_0.pth')))
