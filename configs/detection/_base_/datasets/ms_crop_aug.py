# The DETR / Swin multi-scale + crop augmentation of the 3x schedules (and of PaCa-ViT's 1x); after a
# flip 0.5, with probability 1/2 each:
#   (a) resize the short side to one of 480..800 (step 32), long side <= 1333, or
#   (b) resize to short side 400/500/600, random crop of 384..600 px (absolute range), then (a).
ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
             (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
ms_crop_aug = dict(type='RandomChoice', transforms=[
    [dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True)],
    [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
     dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
     dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True)],
])
