# mmdet's RetinaNet R-50-FPN (P3-P7, extra levels from the C5 input, focal loss; 80 classes) with the
# ResNet replaced by a backbone of this repository. A row sets `model_name`, its kwargs and `neck.in_channels`.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionBackbone',
        model_name=None,
        out_indices=(0, 1, 2, 3),  # the FPN starts at level 1 (stride 8), as mmdet's RetinaNet
        drop_path_rate=None,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False),
    neck=dict(in_channels=None))
