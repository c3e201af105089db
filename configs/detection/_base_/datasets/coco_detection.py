# COCO 2017 boxes, single scale 1333x800, flip 0.5; bbox evaluation.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

# test.py --tta: the test image and its horizontal flip, merged by the DetTTAModel of default_runtime.py
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(1333, 800), keep_ratio=True)],
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [dict(type='LoadAnnotations', with_bbox=True)],
        [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                               'flip', 'flip_direction'))],
    ]),
]
