# PaCa-ViT-B (conv clustering, 100-100-100-0) + UperNet, ADE20K 512x512, 160k iterations.
# Drop path 0.1 (0.5 only with the PaCa head).
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-B (conv clustering, 100-100-100-0)
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 49.67
#   mIoU (ms): -
#   params (M): 77.2
#   FLOPs (G): 264.1
#   ours (M / G, 512x512): 77.18 / 264.1
# alias: upernet_pacavit_base_p2cconv_100_0_512x512_160k_ade20k
_base_ = ['./upernet_pacavit-tiny-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='pacavit_base_p2cconv_100_0',
                  init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_base_p2cconv_100_0.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 512]),
    auxiliary_head=dict(in_channels=384))
