# The embedded tiny ADE20K-style dataset (segmentation/embedded_data.py): 16 train / 8 val generated
# images of 128-256 px, 4 classes + unlabelled (ignored), ADE20K layout and `reduce_zero_label`.
# segmentation/train.py and test.py generate it on first use. Default location <repo>/data/embedded_ade; the
# environment variable EMBEDDED_ADE_ROOT moves it (the directory must be named embedded_ade to be generated).
_base_ = ['./ade20k.py']
dataset_type = 'BaseSegDataset'
data_root = '{{$EMBEDDED_ADE_ROOT:{{fileDirname}}/../../../../data/embedded_ade}}'
metainfo = dict(classes=('sky', 'ground', 'box', 'disc'),
                palette=[[70, 130, 180], [140, 110, 60], [220, 40, 40], [40, 180, 60]])
crop_size = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')],
    ]),
]
_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
