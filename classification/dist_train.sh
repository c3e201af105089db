#!/usr/bin/env bash
# Distributed training with torchrun:  bash classification/dist_train.sh CONFIG NUM_PROCS [main.py options]
# NUM_PROCS processes on this node (one per GPU; on a CPU-only machine, CPU processes with the gloo backend).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node (defaults 1, 0, 127.0.0.1, 29500).
# Under SLURM use classification/slurm_train.sh instead (one task per GPU, started by srun).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCS [main.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROCS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# one thread per process unless told otherwise (torchrun's own default, said explicitly)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROCS" \
    --master_port="$PORT" \
    "$REPO/classification/main.py" --config "$CONFIG" "$@"
