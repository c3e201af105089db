# COCO 2017 boxes, single scale 1333x800, flip 0.5; bbox evaluation.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'
