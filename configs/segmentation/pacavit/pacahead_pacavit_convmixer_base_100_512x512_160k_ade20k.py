# PaCa-ViT-B (ConvMixer clustering teacher, 100 per stage) + PaCa head, ADE20K 512x512, 160k iterations,
# drop path 0.5. Paper row: mIoU 48.4 (ss); params 48.8 M; FLOPs 68.7 G. 200 clusters in all stages.
_base_ = ['./pacahead_pacavit_base_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(backbone=dict(
    model_name='pacavit_convmixer_base_100', num_clusters=(200, 200, 200, 200),
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_convmixer_base_100.pth')))
