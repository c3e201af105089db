# Mask R-CNN for smoke runs on the embedded dataset (3 classes): the same detector with fewer RoIs
# (64 sampled per image in training, 100 proposals and at most 20 detections at test), so that a CPU step
# costs seconds: the 4-conv mask head on 128 positive RoIs dominates the full-size cost. No score threshold
# at test: after a dozen steps the class scores may all be below mmdet's 0.05, which would leave the
# evaluation without detections (and without metrics).
_base_ = './mask_rcnn_fpn.py'

model = dict(
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=20)))
