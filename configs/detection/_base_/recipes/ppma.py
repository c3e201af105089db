# PPMA's detection optimizer (official mmdet 2.28 configs): AdamW lr 1e-4, wd 0.05, no grad clipping,
# fp32; no weight decay for parameter names containing one of the custom keys (the block LayerNorms,
# `downsample.norm` and `outnorm*`; not the stem BatchNorms `patch_embed.proj.{1,4,7,10}` nor `path_embed`).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'query_embedding': dict(decay_mult=0.0),
        'relative_pos_bias_local': dict(decay_mult=0.0),
        'cpb': dict(decay_mult=0.0),
        'temperature': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
    }))
