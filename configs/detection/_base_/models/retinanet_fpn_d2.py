# RetinaNet with detectron2's pyramid (MPViT's official detector): FPN on the stride-8/16/32 stages
# (P3-P5), P6 from the last backbone stage and P7 = conv(ReLU(P6)). mmdet's default RetinaNet takes the
# same P6 input but applies no ReLU before P7.
_base_ = './retinanet_fpn.py'

model = dict(
    backbone=dict(out_indices=(1, 2, 3)),
    neck=dict(start_level=0, add_extra_convs='on_input', relu_before_extra_convs=True, num_outs=5))
