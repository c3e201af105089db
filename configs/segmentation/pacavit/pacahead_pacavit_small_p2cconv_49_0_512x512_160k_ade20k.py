# Ablation: PaCa-ViT-S (conv clustering, 49-49-49-0) + PaCa head, ADE20K 512x512, 160k.
# Paper row (PaCa-head ablation on small): mIoU 47.8 (ss); params / FLOPs not reported.
# Downstream clusters (200, 200, 200, 0), as the official config.
_base_ = ['./pacahead_pacavit_small_p2cconv_100_0_512x512_160k_ade20k.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cconv_49_0', num_clusters=(200, 200, 200, 0),
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cconv_49_0.pth')))
