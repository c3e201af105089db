# mmdet's default runtime (hooks, logging, visualizer) plus this repository's backbones: importing
# `openmmlab` registers `VisionBackbone` in mmdet's MODELS registry.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['openmmlab'], allow_failed_imports=False)
# detection/train.py picks the distributed backend (nccl with CUDA, gloo on CPU) over this default.
env_cfg = dict(dist_cfg=dict(backend='nccl'))
# test.py --tta: mmdet's flip test-time augmentation, merged box by box (the datasets' bases define the
# tta_pipeline of box-only detectors; DetTTAModel merges no masks)
tta_model = dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
