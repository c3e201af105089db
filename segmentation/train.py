"""Train a segmentor from an mmseg 1.x config (mmengine Runner), on GPUs or on a CPU.

    python segmentation/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    bash segmentation/dist_train.sh CONFIG NUM_PROCS [args]      # torchrun; NNODES / NODE_RANK / MASTER_ADDR / PORT

CONFIG is a path or a config name under configs/segmentation (``smoke`` = smoke/upernet_smoke.py).
Distributed runs use nccl on CUDA and gloo on a CPU (where SyncBN becomes BN). The embedded tiny dataset
is generated on first use when the config points at it.
"""
import argparse
import contextlib
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.runner import Runner

from models.openmmlab_runtime import LAUNCHERS
from segmentation import embedded_data
from segmentation._launch import (check_datasets, load_config, mmengine_checkpoint_globals,
                                  resolve_config, resolve_launcher, setup_device)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file or config name")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default ./work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or from the latest checkpoint in the work dir when no CKPT is given")
    parser.add_argument("--amp", action="store_true", help="mixed-precision training (CUDA)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    parser.add_argument("--launcher", choices=LAUNCHERS, default=None,
                        help="job launcher (default: 'pytorch' under torchrun, else 'none')")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    device = setup_device(cfg, resolve_launcher(args.launcher))
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(resolve_config(args.config)))[0])
    if args.amp:
        if device != "cuda":
            raise SystemExit("--amp needs a CUDA device (no GPU found)")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f"--resume: checkpoint not found: {args.resume}")
        cfg.resume, cfg.load_from = True, args.resume
    embedded_data.ensure_for_config(cfg)
    check_datasets(cfg)
    runner = Runner.from_cfg(cfg)
    resume_from = cfg.load_from if cfg.resume else None
    if cfg.resume and resume_from is None:
        from mmengine.runner import find_latest_checkpoint
        resume_from = find_latest_checkpoint(cfg.work_dir)
    # mmengine reads the resumed checkpoint with torch.load's weights-only unpickler: allow its training state
    with mmengine_checkpoint_globals(resume_from) if resume_from else contextlib.nullcontext():
        runner.train()


if __name__ == "__main__":
    main()
