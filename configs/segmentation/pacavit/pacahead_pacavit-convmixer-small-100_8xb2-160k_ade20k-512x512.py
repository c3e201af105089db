# PaCa-ViT-S (ConvMixer clustering teacher, 100 per stage) + PaCa head, ADE20K 512x512, 160k iterations.
# 200 clusters in all four stages downstream.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-S (ConvMixer clustering teacher, 100 per stage)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 46.2
#   mIoU (ms): -
#   params (M): 22.2
#   FLOPs (G): 46.4
#   ours (M / G, 512x512): 22.24 / 46.4
# alias: pacahead_pacavit_convmixer_small_100_512x512_160k_ade20k
_base_ = ['./pacahead_pacavit-small-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(
    model_name='pacavit_convmixer_small_100', num_clusters=(200, 200, 200, 200),
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_convmixer_small_100.pth')))
