#!/usr/bin/env bash
# Distributed evaluation with torchrun (OpenMMLab convention):
#   bash segmentation/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args, e.g. --aug-test]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. GPUs: one process per GPU (nccl); CPU: gloo.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROCS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
exec torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    --nproc_per_node="$NPROCS" "$ROOT/segmentation/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
