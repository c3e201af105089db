# The embedded tiny dataset (see embedded_coco_instance.py) for box-only detectors: bbox evaluation.
_base_ = './embedded_coco_instance.py'

val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
# test.py --tta: the test image and its horizontal flip, merged by the DetTTAModel of default_runtime.py
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(320, 256), keep_ratio=True)],
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [dict(type='LoadAnnotations', with_bbox=True)],
        [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                               'flip', 'flip_direction'))],
    ]),
]
