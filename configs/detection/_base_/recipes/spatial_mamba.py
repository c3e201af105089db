# Spatial-Mamba's detection optimizer (official configs inherit mmdet 3.x's Swin Mask R-CNN): AdamW lr 1e-4,
# wd 0.05, no weight decay for names containing 'absolute_pos_embed', 'relative_position_bias_table' or
# 'norm' (this matches out_norm / outnorm* / the stem BNs `.norm.`, not the block LayerNorms ln_1 / ln_2).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.0),
        'relative_position_bias_table': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
    }))
