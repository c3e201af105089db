#!/usr/bin/env bash
# srun launcher behind <task>/slurm_train.sh and <task>/slurm_test.sh, in OpenMMLab's convention:
#   bash openmmlab/tools/slurm_launch.sh TASK train PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
#   bash openmmlab/tools/slurm_launch.sh TASK test PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# Environment, as OpenMMLab's slurm scripts: GPUS (8, the number of tasks), GPUS_PER_NODE (8),
# CPUS_PER_TASK (5), SRUN_ARGS (extra srun options). One process per GPU, launcher slurm (CUDA only).
set -euo pipefail
USAGE_train="PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]"
USAGE_test="PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]"
source "$(dirname "${BASH_SOURCE[0]}")/launch_args.sh"
shift 2

(( $# >= 4 )) || die "expected 4 arguments, got $#"
if [[ $MODE == train ]]; then TARGET=(--work-dir="$4"); else TARGET=("$4"); fi
if [[ $MODE == test && ! -f $4 ]]; then die "checkpoint not found: $4"; fi
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
for var in GPUS GPUS_PER_NODE CPUS_PER_TASK; do
    is_count "${!var}" 1 || die "$var must be a positive integer, got '${!var}'"
done
read -r -a EXTRA <<< "${SRUN_ARGS:-}"

set -x
srun -p "$1" --job-name="$2" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 "${EXTRA[@]}" \
    python -u "$REPO/$TASK/$MODE.py" "$3" "${TARGET[@]}" --launcher=slurm "${@:5}"
