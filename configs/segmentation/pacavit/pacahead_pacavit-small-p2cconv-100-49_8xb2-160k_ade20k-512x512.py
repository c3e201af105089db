# Ablation: PaCa-ViT-S (conv clustering, 100-81-64-49) + PaCa head, ADE20K 512x512, 160k.
# Downstream clusters (200, 200, 200, 200), as the official config.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-S (conv clustering, 100-81-64-49)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 47.6
#   mIoU (ms): -
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 23.41 / 47.3
#   note: params / FLOPs not reported
# alias: pacahead_pacavit_small_p2cconv_100_49_512x512_160k_ade20k
_base_ = ['./pacahead_pacavit-small-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cconv_100_49', num_clusters=(200, 200, 200, 200),
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cconv_100_49.pth')))
