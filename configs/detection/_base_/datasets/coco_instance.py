# COCO 2017 instances (boxes + masks), single scale 1333x800, flip 0.5; bbox + segm evaluation.
# Expects data/coco/{annotations,train2017,val2017} under the working directory (mmdet's layout); point
# elsewhere with --cfg-options or by inheriting and setting data_root in every dataloader and evaluator.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
