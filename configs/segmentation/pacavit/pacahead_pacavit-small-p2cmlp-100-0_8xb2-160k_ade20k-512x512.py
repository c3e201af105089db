# PaCa-ViT-S (MLP clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations.
# The `clustering.4` lr multiplier matches nothing here (the MLP clusterer is clustering.{0,2}), as upstream.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-S (MLP clustering, 100-100-100-0)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 48.2
#   mIoU (ms): -
#   params (M): 24.0
#   FLOPs (G): 50.0
#   ours (M / G, 512x512): 23.95 / 49.9
# alias: pacahead_pacavit_small_p2cmlp_100_0_512x512_160k_ade20k
_base_ = ['./pacahead_pacavit-small-p2cconv-100-0_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(
    model_name='pacavit_small_p2cmlp_100_0',
    init_cfg=dict(checkpoint='pretrained/IMNET_224_pacavit_small_p2cmlp_100_0.pth')))
