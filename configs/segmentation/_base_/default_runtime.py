# Runtime shared by every segmentation config (mmseg 1.x / mmengine conventions).
# `openmmlab` registers the `VisionBackbone` adapter, the `PaCaSegHead` decode head and the `AlignResize`
# test transform P2T's configs use in mmseg's registries.
custom_imports = dict(imports=['openmmlab'], allow_failed_imports=False)
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # segmentation/train.py and test.py use gloo on CPU
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# multi-scale + flip evaluation (`test.py --tta` / `--aug-test`) wraps the model in this; the scales are in
# each dataset's / config's `tta_pipeline`
tta_model = dict(type='SegTTAModel')
