# PaCa-ViT-B (ConvMixer clustering teacher, 100 per stage) + PaCa head, ADE20K 512x512, 160k iterations,
# drop path 0.5. 200 clusters in all stages.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-B (ConvMixer clustering teacher, 100 per stage)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 48.4
#   mIoU (ms): -
#   params (M): 48.8
#   FLOPs (G): 68.7
#   ours (M / G, 512x512): 48.76 / 68.7
# alias: pacahead_pacavit_convmixer_base_100_512x512_160k_ade20k
_base_ = ['./pacahead_pacavit-base-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(
    model_name='pacavit_convmixer_base_100', num_clusters=(200, 200, 200, 200),
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_convmixer_base_100.pth')))
