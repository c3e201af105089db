_dataset = dict(
    data_root=
    '/work/wt20/configs/segmentation/_base_/datasets/../../../../data/embedded_ade',
    img_suffix='.jpg',
    metainfo=dict(
        classes=(
            'sky',
            'ground',
            'box',
            'disc',
        ),
        palette=[
            [
                70,
                130,
                180,
            ],
            [
                140,
                110,
                60,
            ],
            [
                220,
                40,
                40,
            ],
            [
                40,
                180,
                60,
            ],
        ]),
    reduce_zero_label=True,
    seg_map_suffix='.png',
    type='BaseSegDataset')
crop_size = (
    128,
    128,
)
custom_imports = dict(
    allow_failed_imports=False,
    imports=[
        'models.openmmlab',
        'segmentation.transforms',
    ])
data_preprocessor = dict(
    bgr_to_rgb=True,
    mean=[
        123.675,
        116.28,
        103.53,
    ],
    pad_val=0,
    seg_pad_val=255,
    size=(
        512,
        512,
    ),
    std=[
        58.395,
        57.12,
        57.375,
    ],
    type='SegDataPreProcessor')
data_root = '/work/wt20/configs/segmentation/_base_/datasets/../../../../data/embedded_ade'
dataset_type = 'BaseSegDataset'
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=40, type='CheckpointHook'),
    logger=dict(interval=10, log_metric_by_epoch=False, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'),
    visualization=dict(type='SegVisualizationHook'))
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    dist_cfg=dict(backend='gloo'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
img_ratios = [
    0.75,
    1.0,
    1.25,
]
launcher = 'pytorch'
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=False)
metainfo = dict(
    classes=(
        'sky',
        'ground',
        'box',
        'disc',
    ),
    palette=[
        [
            70,
            130,
            180,
        ],
        [
            140,
            110,
            60,
        ],
        [
            220,
            40,
            40,
        ],
        [
            40,
            180,
            60,
        ],
    ])
model = dict(
    auxiliary_head=dict(
        align_corners=False,
        channels=16,
        concat_input=False,
        dropout_ratio=0.1,
        in_channels=48,
        in_index=2,
        loss_decode=dict(
            loss_weight=0.4, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='BN'),
        num_classes=4,
        num_convs=1,
        type='FCNHead'),
    backbone=dict(
        depths=(
            1,
            1,
            1,
            1,
        ),
        drop_path_rate=0.0,
        embed_dims=(
            16,
            32,
            48,
            64,
        ),
        model_name='p2t_tiny',
        num_heads=(
            1,
            1,
            1,
            1,
        ),
        out_indices=(
            0,
            1,
            2,
            3,
        ),
        type='VisionBackbone'),
    data_preprocessor=dict(
        bgr_to_rgb=True,
        mean=[
            123.675,
            116.28,
            103.53,
        ],
        pad_val=0,
        seg_pad_val=255,
        size=(
            128,
            128,
        ),
        std=[
            58.395,
            57.12,
            57.375,
        ],
        type='SegDataPreProcessor'),
    decode_head=dict(
        align_corners=False,
        channels=32,
        dropout_ratio=0.1,
        in_channels=[
            16,
            32,
            48,
            64,
        ],
        in_index=[
            0,
            1,
            2,
            3,
        ],
        loss_decode=dict(
            loss_weight=1.0, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='BN'),
        num_classes=4,
        pool_scales=(
            1,
            2,
            3,
            6,
        ),
        type='UPerHead'),
    test_cfg=dict(mode='whole'),
    train_cfg=dict(),
    type='EncoderDecoder')
model_wrapper_cfg = dict(
    broadcast_buffers=True,
    device_ids=None,
    find_unused_parameters=False,
    type='MMDistributedDataParallel')
norm_cfg = dict(requires_grad=True, type='SyncBN')
optim_wrapper = dict(
    optimizer=dict(
        betas=(
            0.9,
            0.999,
        ), lr=0.002, type='AdamW', weight_decay=0.01),
    type='OptimWrapper')
param_scheduler = [
    dict(begin=0, by_epoch=False, end=5, start_factor=0.1, type='LinearLR'),
    dict(
        begin=5, by_epoch=False, end=40, eta_min=0.0, power=1.0,
        type='PolyLR'),
]
randomness = dict(seed=0)
resume = False
sync_bn = None
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        data_root=
        '/work/wt20/configs/segmentation/_base_/datasets/../../../../data/embedded_ade',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'sky',
                'ground',
                'box',
                'disc',
            ),
            palette=[
                [
                    70,
                    130,
                    180,
                ],
                [
                    140,
                    110,
                    60,
                ],
                [
                    220,
                    40,
                    40,
                ],
                [
                    40,
                    180,
                    60,
                ],
            ]),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                256,
                128,
            ), type='Resize'),
            dict(reduce_zero_label=True, type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=True,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(keep_ratio=True, scale=(
        256,
        128,
    ), type='Resize'),
    dict(reduce_zero_label=True, type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_cfg = dict(max_iters=40, type='IterBasedTrainLoop', val_interval=40)
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        data_root=
        '/work/wt20/configs/segmentation/_base_/datasets/../../../../data/embedded_ade',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'sky',
                'ground',
                'box',
                'disc',
            ),
            palette=[
                [
                    70,
                    130,
                    180,
                ],
                [
                    140,
                    110,
                    60,
                ],
                [
                    220,
                    40,
                    40,
                ],
                [
                    40,
                    180,
                    60,
                ],
            ]),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(reduce_zero_label=True, type='LoadAnnotations'),
            dict(
                keep_ratio=True,
                ratio_range=(
                    0.5,
                    2.0,
                ),
                scale=(
                    256,
                    128,
                ),
                type='RandomResize'),
            dict(
                cat_max_ratio=0.75, crop_size=(
                    128,
                    128,
                ), type='RandomCrop'),
            dict(prob=0.5, type='RandomFlip'),
            dict(type='PhotoMetricDistortion'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=True,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=True, type='InfiniteSampler'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(reduce_zero_label=True, type='LoadAnnotations'),
    dict(
        keep_ratio=True,
        ratio_range=(
            0.5,
            2.0,
        ),
        scale=(
            256,
            128,
        ),
        type='RandomResize'),
    dict(cat_max_ratio=0.75, crop_size=(
        128,
        128,
    ), type='RandomCrop'),
    dict(prob=0.5, type='RandomFlip'),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        transforms=[
            [
                dict(keep_ratio=True, scale_factor=0.75, type='Resize'),
                dict(keep_ratio=True, scale_factor=1.0, type='Resize'),
                dict(keep_ratio=True, scale_factor=1.25, type='Resize'),
            ],
            [
                dict(direction='horizontal', prob=0.0, type='RandomFlip'),
                dict(direction='horizontal', prob=1.0, type='RandomFlip'),
            ],
            [
                dict(reduce_zero_label=True, type='LoadAnnotations'),
            ],
            [
                dict(type='PackSegInputs'),
            ],
        ],
        type='TestTimeAug'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        data_root=
        '/work/wt20/configs/segmentation/_base_/datasets/../../../../data/embedded_ade',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'sky',
                'ground',
                'box',
                'disc',
            ),
            palette=[
                [
                    70,
                    130,
                    180,
                ],
                [
                    140,
                    110,
                    60,
                ],
                [
                    220,
                    40,
                    40,
                ],
                [
                    40,
                    180,
                    60,
                ],
            ]),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                256,
                128,
            ), type='Resize'),
            dict(reduce_zero_label=True, type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=True,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    name='visualizer',
    type='SegLocalVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
    ])
work_dir = '/work/scratch20/seg_smoke'
