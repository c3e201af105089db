"""Evaluate a segmentor checkpoint (ours or a paper's official one) on a config's test set.

    python segmentation/test.py CONFIG CHECKPOINT [--aug-test] [--work-dir DIR] [--out DIR] [--cfg-options k=v ...]
    bash segmentation/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [args]

``--aug-test`` (alias ``--tta``) evaluates multi-scale + flip: the config's ``tta_pipeline`` (the paper's
scales x {no flip, flip}) with mmseg's ``SegTTAModel`` averaging the softmax outputs; a config may set
``tta_test_cfg`` (e.g. whole-image instead of sliding-window inference, as PPMA's multi-scale runs).
The checkpoint is loaded strictly (official backbone key layouts are mapped by models/openmmlab.py); any
missing or unexpected key is an error naming it.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.runner import Runner

from models.openmmlab_runtime import LAUNCHERS, write_test_metrics
from segmentation import embedded_data
from segmentation._launch import (check_datasets, load_config, load_segmentor_checkpoint,
                                  resolve_config, resolve_launcher, setup_device)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file or config name")
    parser.add_argument("checkpoint", help="segmentor checkpoint (.pth)")
    parser.add_argument("--aug-test", "--tta", dest="aug_test", action="store_true",
                        help="multi-scale + flip test with the config's tta_pipeline")
    parser.add_argument("--work-dir", help="where logs and metrics go (default ./work_dirs/<config name>)")
    parser.add_argument("--out", help="also save the predicted label maps (PNG) to this directory")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    parser.add_argument("--launcher", choices=LAUNCHERS, default=None,
                        help="job launcher (default: 'pytorch' under torchrun, else 'none')")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    cfg = load_config(args.config, args.cfg_options)
    setup_device(cfg, resolve_launcher(args.launcher))
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(resolve_config(args.config)))[0])
    cfg.load_from = None  # loaded strictly below, not by the Runner (which only warns on mismatches)
    cfg.resume = False
    if args.aug_test:
        if "tta_pipeline" not in cfg or "tta_model" not in cfg:
            raise SystemExit(f"--aug-test: config {args.config} defines no tta_pipeline / tta_model")
        if cfg.get("tta_test_cfg"):
            cfg.model.test_cfg = cfg.tta_test_cfg
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator["output_dir"] = args.out
    embedded_data.ensure_for_config(cfg)
    check_datasets(cfg, ("test_dataloader",))
    runner = Runner.from_cfg(cfg)
    load_segmentor_checkpoint(runner, args.checkpoint)
    metrics = runner.test()
    write_test_metrics(runner, metrics)
    return metrics


if __name__ == "__main__":
    main()
