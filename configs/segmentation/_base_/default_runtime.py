# mmseg's default runtime (scope, logging, SegLocalVisualizer, `tta_model = SegTTAModel` for test.py --tta)
# plus this repository's OpenMMLab layer: importing `openmmlab` registers the `VisionBackbone` adapter, the
# `PaCaSegHead` decode head and P2T's `AlignResize` test transform in mmseg's registries.
# segmentation/train.py and test.py use gloo instead of nccl on a CPU.
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['openmmlab'], allow_failed_imports=False)
