"""``SegTestVisualizationHook``: ``test.py --show-dir`` for mmseg as mmdet has it.

mmseg's ``SegVisualizationHook`` draws only every ``interval``-th test image (50 by default, so a short test
run draws none) and hands the images to the visualizer's backends instead of a directory. This subclass
draws every test image and, with ``test_out_dir``, writes each to ``<work_dir>/<timestamp>/<test_out_dir>/``
under its own file name (an absolute ``test_out_dir`` is used as it is), as mmdet's ``DetVisualizationHook``
does, so that the flag behaves the same in both task folders. Validation is drawn as mmseg does it.
"""
from __future__ import annotations

import os.path as osp

import mmcv
from mmengine import fileio
from mmengine.utils import mkdir_or_exist
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS

__all__ = ["SegTestVisualizationHook"]


@HOOKS.register_module()
class SegTestVisualizationHook(SegVisualizationHook):
    """``SegVisualizationHook`` that draws every test image, to ``test_out_dir`` when given."""

    def __init__(self, test_out_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.test_out_dir = test_out_dir

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict, outputs) -> None:
        if not self.draw:
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
            mkdir_or_exist(out_dir)
        for output in outputs:
            name = osp.basename(output.img_path)
            img = mmcv.imfrombytes(fileio.get(output.img_path, backend_args=self.backend_args), channel_order="rgb")
            self._visualizer.add_datasample(f"test_{name}", img, data_sample=output, show=self.show,
                                            wait_time=self.wait_time,
                                            out_file=osp.join(out_dir, name) if out_dir else None, step=batch_idx)
