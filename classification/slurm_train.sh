#!/usr/bin/env bash
# SLURM training, one task per GPU started by srun, e.g. two nodes of 8 GPUs:
#   srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 --cpus-per-task=12 \
#       bash classification/slurm_train.sh configs/classification/ppma_base.yaml --data-path /imagenet
# The trainer reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (timm's init_distributed_device); this script
# only names the rendezvous: the job's first host and PORT (default 29500).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: srun ... $0 CONFIG [main.py options]" >&2
    exit 2
fi
CONFIG=$1
shift
: "${SLURM_PROCID:?not started by srun (SLURM_PROCID is unset): use classification/dist_train.sh}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${MASTER_ADDR:-}" ]; then
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
fi
export MASTER_ADDR
export MASTER_PORT=${MASTER_PORT:-${PORT:-29500}}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec python "$REPO/classification/main.py" --config "$CONFIG" "$@"
