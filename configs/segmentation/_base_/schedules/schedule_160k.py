# mmseg's 160k-iteration schedule (loops, hooks, checkpoints and evaluation every 16k) with the UperNet
# recipe shared by PPMA, PaCa-ViT, MPViT and Spatial-Mamba instead of its SGD: AdamW lr 6e-5 (betas
# 0.9/0.999), linear warm-up over 1500 iterations from 1e-6 x lr, then poly decay (power 1.0) to 0.
# Weight decay and parameter-wise multipliers are set per family.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
