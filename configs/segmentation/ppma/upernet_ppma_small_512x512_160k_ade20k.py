# PPMA-S + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper row: mIoU 51.1 (ss) / 52.0 (ms); params -, FLOPs - (not in the PPMA README).
# Official log: 51.11 (ss).
_base_ = ['./upernet_ppma_tiny_512x512_160k_ade20k.py']
model = dict(backbone=dict(model_name='ppma_small', drop_path_rate=0.15,
                           init_cfg=dict(checkpoint='pretrained/ppma_small.pth')))
