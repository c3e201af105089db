# PPMA-S + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official log: 51.11 (ss).
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-S
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 51.1
#   mIoU (ms): 52.0
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 55.73 / 238.9
#   note: params / FLOPs not in the PPMA README
# alias: upernet_ppma_small_512x512_160k_ade20k
_base_ = ['./upernet_ppma-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(model_name='ppma_small', drop_path_rate=0.15,
                           init_cfg=dict(checkpoint='pretrained/ppma_small.pth')))
