"""What the shared tools (:mod:`openmmlab.tools`) need to know about a task folder.

``detection/task.py`` and ``segmentation/task.py`` each build one :class:`Task`: the framework class
(:class:`MMDetTask`, :class:`MMSegTask`) carries what mmdet and mmseg do differently, the arguments what the
folder owns (its configs, its embedded dataset). Everything else in ``train.py``,
``test.py`` and ``get_flops.py`` is the same code for both.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from mmengine.config import Config, ConfigDict

__all__ = ["MMDetTask", "MMSegTask", "Task"]


class Task:
    """One task folder.

    Args:
        name: the folder (``detection``), used in messages and default paths.
        config_dir: where its configs are (names given to the tools are looked up here).
        embedded_data: the module of its embedded dataset: ``DEFAULT_ROOT`` (a ``data_root`` with its directory
            name is generated) and ``generate(root)``.
    """

    scope: str = ""                 # mmengine registry scope of the framework
    flops_shape: tuple[int, int] = (0, 0)
    has_auto_scale_lr: bool = False  # the framework's train.py has --auto-scale-lr
    test_visualization_hook: str | None = None  # a hook type that draws every test image, if not the config's
    tta_aliases: tuple[str, ...] = ()  # other spellings of test.py's --tta

    def __init__(self, name: str, config_dir: Path, embedded_data: ModuleType):
        self.name = name
        self.config_dir = Path(config_dir)
        self.embedded_data = embedded_data

    # ---------------------------------------------------------------------------------- test options
    def enable_tta(self, cfg: Config, config: str) -> None:
        """``--tta``: the config's ``tta_pipeline`` for the test set and its ``tta_model`` around the model
        (``tta_test_cfg``, when given, replaces the model's test_cfg)."""
        missing = [k for k in ("tta_model", "tta_pipeline") if k not in cfg]
        if missing:
            raise SystemExit(f"--tta: config {config} defines no {' / '.join(missing)}")
        if cfg.get("tta_test_cfg"):
            cfg.model.test_cfg = cfg.tta_test_cfg
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)

    def enable_visualization(self, cfg: Config, show: bool, show_dir: str | None, wait_time: float) -> None:
        """``--show`` / ``--show-dir``: the config's visualization hook draws every test image; with
        ``show_dir`` it writes them to ``<work_dir>/<timestamp>/<show_dir>`` (or ``show_dir`` if absolute)."""
        hook = (cfg.get("default_hooks") or {}).get("visualization")
        if hook is None:
            raise SystemExit("--show / --show-dir need default_hooks.visualization in the config")
        if self.test_visualization_hook:
            hook.type = self.test_visualization_hook
        hook.update(draw=True, show=show, wait_time=wait_time, test_out_dir=show_dir)

    def dump_predictions(self, cfg: Config, out: str) -> None:
        """``--out``: also save the raw predictions (the framework's format)."""
        raise NotImplementedError

    def flops_data_samples(self, h: int, w: int):
        """The data samples the model's ``mode='tensor'`` forward needs for an input of ``h x w``."""
        raise NotImplementedError


class MMDetTask(Task):
    """mmdet 3.x: DetTTAModel (boxes only), predictions dumped to a .pkl, FLOPs at 1280x800."""

    scope = "mmdet"
    flops_shape = (1280, 800)
    has_auto_scale_lr = True

    def enable_tta(self, cfg: Config, config: str) -> None:
        if cfg.model.get("roi_head", {}).get("mask_head") is not None:
            raise SystemExit(f"--tta: {config} predicts masks, and mmdet's DetTTAModel merges boxes only; "
                             f"use a box-only config (e.g. RetinaNet) or test without --tta")
        super().enable_tta(cfg, config)

    def dump_predictions(self, cfg: Config, out: str) -> None:
        if not out.endswith((".pkl", ".pickle")):
            raise SystemExit(f"--out must be a .pkl file for detection, got {out}")
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
        cfg.test_evaluator = [*evaluators, dict(type="DumpDetResults", out_file_path=out)]

    def flops_data_samples(self, h: int, w: int):
        from mmdet.structures import DetDataSample

        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                    scale_factor=(1.0, 1.0))
        return [DetDataSample(metainfo=meta)]


class MMSegTask(Task):
    """mmseg 1.x: SegTTAModel, predicted label maps written to a directory, FLOPs at 512x512."""

    scope = "mmseg"
    flops_shape = (512, 512)
    tta_aliases = ("--aug-test",)  # mmseg 0.x's flag, which the papers' commands use
    # mmseg's SegVisualizationHook draws only every `interval`-th image and has no output directory
    test_visualization_hook = "SegTestVisualizationHook"

    def dump_predictions(self, cfg: Config, out: str) -> None:
        cfg.test_evaluator["output_dir"] = out
        cfg.test_evaluator["keep_results"] = True

    def flops_data_samples(self, h: int, w: int):
        return None  # EncoderDecoder's tensor mode needs none
