# PaCa-ViT-B (conv clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations, drop path 0.5.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-B (conv clustering, 100-100-100-0)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 50.39
#   mIoU (ms): -
#   params (M): 48.0
#   FLOPs (G): 68.5
#   ours (M / G, 512x512): 47.96 / 68.5
# alias: pacahead_pacavit_base_p2cconv_100_0_512x512_160k_ade20k
_base_ = ['./pacahead_pacavit-tiny-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(model_name='pacavit_base_p2cconv_100_0', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_base_p2cconv_100_0.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 512]))
