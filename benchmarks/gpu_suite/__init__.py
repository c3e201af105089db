"""The GPU suite: one prepared command that checks and measures, on one GPU in under 9.5 minutes (the sections'
budgets add up to 520 s; by default the run ends within 570 s, so one 600 s device call holds it), what GPU
users of this project depend on.

    python -m benchmarks.gpu_suite --out DIR            # on a CUDA machine
    python -m benchmarks.gpu_suite --out DIR --smoke    # the same code on CPU at tiny sizes (tests/CI)
    python -m benchmarks.gpu_suite --out DIR --sections kernels,tiles   # a subset

Sections, in priority order, each in its own child process (a CUDA error or a hang in one cannot take the
others down) with its own time budget (cases that would start after it are recorded as skipped; a child
still running 30 s after it is killed):

1. ``correctness``: Triton / torch kernel paths vs independent fp64 references, forward and every gradient;
   whole tiny models, device logits vs CPU logits of the same weights.
2. ``kernels``: polyline attention vs the official dense path, FlexAttention with a precomputed bias and
   unmasked SDPA / FlashAttention; the scan vs the chunked torch path and the sequential loop. Time + memory.
3. ``models``: training and inference images/s and training peak memory of every tiny and small model
   (bf16 autocast, channels_last, batch 128, 224^2), eager and under ``torch.compile``.
4. ``detection``: PPMA-T and Spatial-Mamba-T backbone fwd + bwd memory at 1344 x 800, batch 2; every
   family's backbone finite (outputs, gradients) under bf16 and fp16 autocast at 1216 x 800.
5. ``trainer``: ``classification/main.py`` under torchrun with AMP fp16 / bf16, channels_last,
   ``--torchcompile`` and a resume; a one-process NCCL group with DDP.
6. ``tiles``: launch-configuration sweep of the Triton kernels (tuning data).

``DIR/gpu_suite.json`` (all records) and ``DIR/gpu_suite.md`` (readable report) are rewritten as records
arrive, so a run cut short keeps what finished; ``DIR/gpu_suite.log`` holds the children's output.
Needs torch, Triton (on CUDA) and timm; no OpenMMLab package, no network, nothing installed.
"""
