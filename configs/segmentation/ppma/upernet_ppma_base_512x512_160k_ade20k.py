# PPMA-B + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper row: mIoU 52.3 (ss) / 53.0 (ms); params -, FLOPs - (not in the PPMA README).
# Official log: 52.26 (ss).
_base_ = ['./upernet_ppma_tiny_512x512_160k_ade20k.py']
model = dict(
    backbone=dict(model_name='ppma_base', drop_path_rate=0.4, init_cfg=dict(checkpoint='pretrained/ppma_base.pth')),
    decode_head=dict(in_channels=[80, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
