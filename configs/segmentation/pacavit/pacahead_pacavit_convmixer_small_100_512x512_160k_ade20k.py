# PaCa-ViT-S (ConvMixer clustering teacher, 100 per stage) + PaCa head, ADE20K 512x512, 160k iterations.
# Paper row: mIoU 46.2 (ss); params 22.2 M; FLOPs 46.4 G. 200 clusters in all four stages downstream.
_base_ = ['./pacahead_pacavit_small_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(backbone=dict(
    model_name='pacavit_convmixer_small_100', num_clusters=(200, 200, 200, 200),
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_convmixer_small_100.pth')))
