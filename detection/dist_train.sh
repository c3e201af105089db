#!/usr/bin/env bash
# Distributed training, OpenMMLab style:  bash detection/dist_train.sh CONFIG NUM_PROCS [train.py options]
# NUM_PROCS processes per node (one per GPU; on a CPU-only machine, CPU processes with the gloo backend).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node (defaults 1, 0, 127.0.0.1, 29500).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCS [train.py options]" >&2
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

PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROCS" \
    --master_port="$PORT" \
    "$REPO/detection/train.py" "$CONFIG" --launcher pytorch "$@"
