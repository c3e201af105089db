# MPViT-S + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official: semantic_segmentation/configs/mpvit/upernet/upernet_mpvit_small_160k_ade20k.py (mmseg 0.11):
# backbone BN as SyncBN (trained, norm_eval False), AdamW wd 0.01 on every parameter, drop path 0.2.
# The backbone's BatchNorms become SyncBatchNorm in distributed GPU runs (`sync_bn='torch'`; BN on CPU).
#
# paper-row:
#   paper: MPViT (Lee et al., CVPR 2022)
#   backbone: MPViT-S
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 48.3
#   mIoU (ms): -
#   params (M): 52
#   FLOPs (G): 943 (2048x512)
#   ours (M / G, 512x512): 51.59 / 236.3
# alias: upernet_mpvit_small_512x512_160k_ade20k
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py',
]
model = dict(
    backbone=dict(model_name='mpvit_small', drop_path_rate=0.2, norm_eval=False,
                  init_cfg=dict(type='Pretrained', checkpoint='pretrained/mpvit_small.pth')),
    decode_head=dict(in_channels=[128, 216, 288, 288], num_classes=150),
    auxiliary_head=dict(in_channels=288, num_classes=150))
sync_bn = 'torch'
