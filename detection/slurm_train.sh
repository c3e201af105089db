#!/usr/bin/env bash
# Training on a SLURM cluster (srun), OpenMMLab style:
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] bash detection/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
exec bash "$(dirname "${BASH_SOURCE[0]}")/../openmmlab/tools/slurm_launch.sh" detection train "$@"
