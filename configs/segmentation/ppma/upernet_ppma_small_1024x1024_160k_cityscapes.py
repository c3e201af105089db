# PPMA-S + UperNet, Cityscapes 1024x1024, 160k iterations, 8 GPUs x 1 image.
# Paper row: mIoU 83.7 (ss) / 84.0 (ms); params -, FLOPs - (not in the PPMA README).
# Official log: 83.68 (ss). Sliding window 1024, stride 341.
_base_ = ['./upernet_ppma_tiny_1024x1024_160k_cityscapes.py']
model = dict(
    backbone=dict(model_name='ppma_small', drop_path_rate=0.15, init_cfg=dict(checkpoint='pretrained/ppma_small.pth')),
    test_cfg=dict(stride=(341, 341)))
