# The embedded tiny COCO-format dataset (detection/embedded_data.py: 24 train / 8 val images of ~256 px,
# classes square / disk / triangle, boxes + polygon / RLE masks). detection/train.py and test.py generate it
# on first use. Default location <repo>/data/embedded_coco; the environment variable EMBEDDED_COCO_ROOT
# moves it (the directory must be named embedded_coco to be generated automatically).
_base_ = './coco_instance.py'

data_root = '{{$EMBEDDED_COCO_ROOT:{{fileDirname}}/../../../../data/embedded_coco}}/'
metainfo = dict(classes=('square', 'disk', 'triangle'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(320, 256), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 256), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
