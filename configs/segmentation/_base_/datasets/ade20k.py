# ADE20K (ADEChallengeData2016, 150 classes), 512x512 crops: mmseg's ade20k.py, as every paper used, with
# 2 images per GPU (8 GPUs x 2 = 16, the papers' batch). Set `data_root` (or --cfg-options
# train_dataloader.dataset.data_root=...) to your copy.
_base_ = 'mmseg::_base_/datasets/ade20k.py'
train_dataloader = dict(batch_size=2)
# test.py --tta: these scale factors x {no flip, horizontal flip} (mmseg 0.x's `--aug-test` ratios, PPMA's
# multi-scale numbers). Unlike mmseg's ADE20K tta_pipeline, the labels are loaded with reduce_zero_label as
# in the test pipeline (without it every label is off by one). Configs with other scales override it.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')],
    ]),
]
