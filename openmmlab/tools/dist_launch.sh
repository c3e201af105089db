#!/usr/bin/env bash
# torchrun launcher behind <task>/dist_train.sh and <task>/dist_test.sh, in OpenMMLab's convention:
#   bash openmmlab/tools/dist_launch.sh TASK train CONFIG NUM_PROCS [train.py options]
#   bash openmmlab/tools/dist_launch.sh TASK test CONFIG CHECKPOINT NUM_PROCS [test.py options]
# NUM_PROCS processes per node (one per GPU; on a machine without CUDA, CPU processes on gloo, with
# OMP_NUM_THREADS=1 unless it is set). Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT on every node
# (defaults 1, 0, 127.0.0.1, 29500), as OpenMMLab's dist_train.sh.
set -euo pipefail
USAGE_train="CONFIG NUM_PROCS [train.py options]"
USAGE_test="CONFIG CHECKPOINT NUM_PROCS [test.py options]"
source "$(dirname "${BASH_SOURCE[0]}")/launch_args.sh"
shift 2
POSITIONAL=$([[ $MODE == train ]] && echo 2 || echo 3)  # CONFIG [CHECKPOINT] NUM_PROCS

(( $# >= POSITIONAL )) || die "expected $POSITIONAL arguments, got $#"
NPROCS=${!POSITIONAL}
is_count "$NPROCS" 1 || die "NUM_PROCS must be a positive integer, got '$NPROCS'"
if [[ $MODE == test && ! -f $2 ]]; then die "checkpoint not found: $2"; fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
is_count "$NNODES" 1 || die "NNODES must be a positive integer, got '$NNODES'"
is_count "$NODE_RANK" 0 && (( NODE_RANK < NNODES )) || die "NODE_RANK must be in [0, NNODES=$NNODES), got '$NODE_RANK'"
is_count "$PORT" 1 && (( PORT <= 65535 )) || die "PORT must be a TCP port number, got '$PORT'"

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # CPU processes: one thread each, as torchrun would set
fi
exec torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    --nproc_per_node="$NPROCS" "$REPO/$TASK/$MODE.py" "${@:1:POSITIONAL-1}" --launcher pytorch "${@:POSITIONAL+1}"
