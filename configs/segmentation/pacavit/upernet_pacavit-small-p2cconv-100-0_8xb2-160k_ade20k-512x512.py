# PaCa-ViT-S (conv clustering, 100-100-100-0) + UperNet, ADE20K 512x512, 160k iterations.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-S (conv clustering, 100-100-100-0)
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 47.6
#   mIoU (ms): -
#   params (M): 51.4
#   FLOPs (G): 242.7
#   ours (M / G, 512x512): 51.40 / 242.7
# alias: upernet_pacavit_small_p2cconv_100_0_512x512_160k_ade20k
_base_ = ['./upernet_pacavit-tiny-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cconv_100_0',
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cconv_100_0.pth')))
