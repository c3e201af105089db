# PaCa-ViT-T (conv clustering, 100-100-100-0) + PaCa head, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official: segmentation/configs/paca_vit/paca_head/pacahead_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k.py.
# Backbone with 200 clusters in stages 1-3 (the ImageNet checkpoint's 100-way cluster convs start from
# scratch, as upstream); those convs (`clustering.4`) and the whole decode head train with 10x the lr.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-T (conv clustering, 100-100-100-0)
#   method: PaCa head
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 45.65
#   mIoU (ms): -
#   params (M): 13.3
#   FLOPs (G): 34.4
#   ours (M / G, 512x512): 13.33 / 34.3
# alias: pacahead_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k
_base_ = [
    '../_base_/models/paca_head.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py',
]
model = dict(
    backbone=dict(
        model_name='pacavit_tiny_p2cconv_100_0', num_clusters=(200, 200, 200, 0), drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint='pretrained/IMNET_224_pacavit_tiny_p2cconv_100_0.pth',
            # the 100-way cluster projections of the ImageNet checkpoint do not fit 200 clusters: fresh init
            reinit=[r'(clustering\.clustering\.\d+|paca_teacher\.to_clusters\d)\.(weight|bias)$'])),
    decode_head=dict(in_channels=[96, 192, 320, 384], num_classes=150))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'norm': dict(decay_mult=0.0),
    'clustering.4': dict(lr_mult=10.0),  # the backbone's re-initialised C -> 200 cluster convs (conv clustering)
    'head': dict(lr_mult=10.0),  # decode_head.*
}))
