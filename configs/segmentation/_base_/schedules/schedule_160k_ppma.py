# PPMA's segmentation optimiser (ADE20K and Cityscapes): the 160k UperNet schedule with weight decay 0.05,
# and no decay for parameters whose names contain query_embedding, relative_pos_bias_local, cpb,
# temperature or norm (the block / output LayerNorms; as in the official config, the stem BNs named
# patch_embed.proj.* and the path_embed decay factors still get weight decay).
_base_ = ['./schedule_160k.py']
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'query_embedding': dict(decay_mult=0.0),
        'relative_pos_bias_local': dict(decay_mult=0.0),
        'cpb': dict(decay_mult=0.0),
        'temperature': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
    }))
