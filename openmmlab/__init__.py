"""The OpenMMLab layer between ``models`` and the task folders (mmdet 3.x, mmseg 1.x).

Dependencies point one way: ``kernels`` <- ``models`` <- ``openmmlab`` <- ``detection``, ``segmentation``.
Configs load it with ``custom_imports = dict(imports=['openmmlab'], allow_failed_imports=False)``; importing
it registers, in each framework that is installed, what the configs name:

- ``VisionBackbone`` (:mod:`.backbone`, mmdet and mmseg MODELS): any model of ``models`` as a backbone;
- ``PaCaSegHead`` (:mod:`.paca_head`, mmseg MODELS): PaCa-ViT's decode head;
- ``AlignResize`` (:mod:`.transforms`, mmseg TRANSFORMS): P2T's test-time resize;
- ``SegTestVisualizationHook`` (:mod:`.visualization`, mmseg HOOKS): ``test.py --show-dir`` for mmseg;
- ``ResumableEpochBasedTrainLoop``, ``StepSeedHook`` (:mod:`.resumable`) and ``PreemptionHook``
  (:mod:`.preemption`), mmengine LOOPS / HOOKS: runs that stop on SIGTERM / SIGINT and resume exactly at any
  step (``train.py`` adds them to every training config).

The rest is what the task folders' scripts share: :mod:`.checkpoint` (the one strict loading rule for whole
detector / segmentor checkpoints), :mod:`.runner` (mmengine's Runner loading through it), :mod:`.launch`
(launcher, device, CPU set-up), :mod:`.configs` (config names), :mod:`.datasets` (dataset checks),
:mod:`.flops` (FLOP counting with the custom-op handles of ``models``), :mod:`.task` (what differs between
the frameworks) and :mod:`.tools` (``train.py``, ``test.py``, ``get_flops.py`` and the launch scripts).
"""
import importlib.util


def _register() -> None:
    from . import preemption, resumable  # noqa: F401  (they register themselves with mmengine)
    from .backbone import VisionBackbone

    if importlib.util.find_spec("mmdet") is not None:
        from mmdet.registry import MODELS as MMDET_MODELS

        MMDET_MODELS.register_module(module=VisionBackbone, force=True)
    if importlib.util.find_spec("mmseg") is not None:
        from mmseg.registry import MODELS as MMSEG_MODELS

        MMSEG_MODELS.register_module(module=VisionBackbone, force=True)
        from . import paca_head, transforms, visualization  # noqa: F401  (they register themselves with mmseg)


_register()
