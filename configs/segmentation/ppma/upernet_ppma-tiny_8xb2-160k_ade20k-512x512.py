# PPMA-T + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official log: 48.73 (ss). Official: upernet_ppma_tiny_512x512_160k_ade20k_{ss,ms}.py (mmseg 0.30).
# Single scale: sliding window 512, stride 341. Multi-scale (--tta): ratios 0.5-1.75 + flip on whole
# images, as the official "_ms" configs.
#
# paper-row:
#   paper: PPMA (Zhao et al., NeurIPS 2025)
#   backbone: PPMA-T
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 48.7
#   mIoU (ms): 49.1
#   params (M): -
#   FLOPs (G): -
#   ours (M / G, 512x512): 43.09 / 229.5
#   note: params / FLOPs not in the PPMA README
# alias: upernet_ppma_tiny_512x512_160k_ade20k
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k_ppma.py',
]
model = dict(
    backbone=dict(
        model_name='ppma_tiny', out_norm=True, drop_path_rate=0.1,  # official downstream backbone: outnorm{i}
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/ppma_tiny.pth')),  # ImageNet-1K checkpoint
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
tta_test_cfg = dict(mode='whole')
