# PaCa-ViT-S (MLP clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations.
# Paper row: mIoU 48.2 (ss); params 24.0 M; FLOPs 50.0 G.
# The `clustering.4` lr multiplier matches nothing here (the MLP clusterer is clustering.{0,2}), as upstream.
_base_ = ['./pacahead_pacavit_small_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cmlp_100_0',
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cmlp_100_0.pth')))
