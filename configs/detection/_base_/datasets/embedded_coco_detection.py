# The embedded tiny dataset (see embedded_coco_instance.py) for box-only detectors: bbox evaluation.
_base_ = './embedded_coco_instance.py'

val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
