"""The task folders' scripts, written once: each ``<task>/train.py``, ``test.py`` and ``get_flops.py`` calls
``main(TASK)`` of the module of its name here, and each ``<task>/dist_*.sh`` / ``slurm_*.sh`` runs
``dist_launch.sh`` / ``slurm_launch.sh`` here. The flags are those of mmdet's and mmseg's ``tools/``; what
differs between the frameworks (``--tta``, ``--out``, ``--auto-scale-lr``) comes from :mod:`openmmlab.task`.
"""
