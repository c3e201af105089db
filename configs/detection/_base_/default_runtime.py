# mmdet's default runtime (hooks, logging, visualizer) plus this repository's backbones: importing
# `models.openmmlab` registers `VisionBackbone` in mmdet's MODELS registry.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['models.openmmlab'], allow_failed_imports=False)
# detection/train.py picks the distributed backend (nccl with CUDA, gloo on CPU) over this default.
env_cfg = dict(dist_cfg=dict(backend='nccl'))
