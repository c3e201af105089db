# PaCa-ViT-T (conv clustering, 100-100-100-0) + UperNet, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.
# Official: segmentation/configs/paca_vit/upernet/upernet_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k.py.
# Downstream backbones use 200 clusters in stages 1-3 (`downstream_cluster_num`): the ImageNet checkpoint's
# 100-way cluster convs (`clustering.clustering.4`) do not fit and start from scratch, as upstream.
#
# paper-row:
#   paper: PaCa-ViT (Grainger et al., CVPR 2023)
#   backbone: PaCa-ViT-T (conv clustering, 100-100-100-0)
#   method: UperNet
#   dataset: ADE20K 512x512
#   schedule: 160k
#   mIoU (ss): 44.49
#   mIoU (ms): -
#   params (M): 41.6
#   FLOPs (G): 229.9
#   ours (M / G, 512x512): 41.56 / 229.8
# alias: upernet_pacavit_tiny_p2cconv_100_0_512x512_160k_ade20k
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py',
]
model = dict(
    backbone=dict(
        model_name='pacavit_tiny_p2cconv_100_0', num_clusters=(200, 200, 200, 0), drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint='pretrained/IMNET_224_pacavit_tiny_p2cconv_100_0.pth',
            # the 100-way cluster projections of the ImageNet checkpoint do not fit 200 clusters: fresh init
            reinit=[r'(clustering\.clustering\.\d+|paca_teacher\.to_clusters\d)\.(weight|bias)$'])),
    decode_head=dict(in_channels=[96, 192, 320, 384], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
