# MPViT's detection solver, ported from its detectron2 configs: AdamW lr 1e-4, weight decay 0.05 on every
# parameter (detectron2 exempts nothing), gradient clipping of the whole model to L2 norm 1.0; the
# backbone's BatchNorms are trained as SyncBN (converted by mmengine when running distributed).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, norm_type=2))
sync_bn = 'torch'
