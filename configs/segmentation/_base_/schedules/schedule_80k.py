# mmseg's 80k-iteration schedule (loops, hooks, checkpoints and evaluation every 8k) with P2T's Semantic FPN
# recipe instead of its SGD: AdamW lr 1e-4, weight decay 1e-4, no clipping (P2T-B/L: 35), poly decay
# (power 0.9) to 1e-6, no warm-up (mmseg 0.x `lr_config=dict(policy='poly', power=0.9, min_lr=1e-6)`).
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=80000),
]
