#!/usr/bin/env bash
# Distributed evaluation (torchrun), OpenMMLab style:
#   bash segmentation/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT on every node (see openmmlab/tools/dist_launch.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../openmmlab/tools/dist_launch.sh" segmentation test "$@"
