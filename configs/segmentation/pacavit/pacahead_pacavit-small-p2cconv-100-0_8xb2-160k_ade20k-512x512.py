# PaCa-ViT-S (conv clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-S (conv clustering, 100-100-100-0)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 48.3
#   mIoU (ms): -
#   params (M): 23.2
#   FLOPs (G): 47.2
#   ours (M / G, 512x512): 23.16 / 47.2
# alias: pacahead_pacavit_small_p2cconv_100_0_512x512_160k_ade20k
_base_ = ['./pacahead_pacavit-tiny-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cconv_100_0',
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cconv_100_0.pth')))
