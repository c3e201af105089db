# mmdet's Mask R-CNN R-50-FPN (RPN, Shared2FC box head, 4-conv mask head; 80 classes) with the ResNet
# replaced by a backbone of this repository. A row sets `model_name`, its kwargs and `neck.in_channels`.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionBackbone',
        model_name=None,           # e.g. 'ppma_tiny' (any name in models.list_models())
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        drop_path_rate=None,       # None: the model's default
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False),            # rows add init_cfg=dict(type='Pretrained', checkpoint=PATH)
    neck=dict(in_channels=None))   # = backbone.channels
