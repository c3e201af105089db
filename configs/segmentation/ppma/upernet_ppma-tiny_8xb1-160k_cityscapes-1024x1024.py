# PPMA-T + UperNet, Cityscapes 1024x1024, 160k iterations, 8 GPUs x 1 image, evaluation every 4k.
# Official log: 82.66 (ss). Official: cityscapes/upernet_ppma_tiny_1024x1024_160k_cityscapes_ss.py.
# Sliding window 1024 with stride 768 for T (341 for S/B, as the official configs are written).
# The official T/S configs kept num_classes=150 (B was fixed to 19 upstream); 19 here for all.
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-T
#   method: UperNet
#   dataset: Cityscapes 1024x1024
#   schedule: 160k
#   mIoU (ss): 82.7
#   mIoU (ms): 83.5
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 42.99 / 228.4
#   note: params / FLOPs not in the PPMA README
# alias: upernet_ppma_tiny_1024x1024_160k_cityscapes
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/cityscapes_1024x1024.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k_ppma.py',
]
model = dict(
    data_preprocessor=dict(size=(1024, 1024)),
    backbone=dict(
        model_name='ppma_tiny', out_norm=True, drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/ppma_tiny.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=19),
    auxiliary_head=dict(in_channels=256, num_classes=19),
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
train_cfg = dict(val_interval=4000)
