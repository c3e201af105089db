# PPMA-B + UperNet, Cityscapes 1024x1024, 160k iterations, 8 GPUs x 1 image.
# Paper row: mIoU 83.9 (ss) / 84.3 (ms); params -, FLOPs - (not in the PPMA README).
# Official log: 83.91 (ss). Sliding window 1024, stride 341.
_base_ = ['./upernet_ppma_small_1024x1024_160k_cityscapes.py']
model = dict(
    backbone=dict(model_name='ppma_base', drop_path_rate=0.4, init_cfg=dict(checkpoint='pretrained/ppma_base.pth')),
    decode_head=dict(in_channels=[80, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
