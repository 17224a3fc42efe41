"""Training views shared by the runs of one process: an epoch's augmented images, made once per (data, seed, epoch).

A training view is a pure function of the decoded image, the run seed, the epoch and the row (``augment``: each
sample has its own seed), and the epoch's order a pure function of (seed, epoch) (``loader.epoch_order``). So every
run of a study with the same data and seed (the baseline, the teacher, each KD student, a sweep's points) is shown
the very same batches; on the CPU path, where albumentations runs in the trainer's own process, each of them paid
for making them again (at 32 px, 0.39 ms an image on 2 cores: as much as test_resnet's whole training step). Here
an epoch's views, once made in full, are kept (``memo.ArrayMemo``, within its budget: the demo's two seeds x four
epochs take 12 MB, one epoch of MURA at 224 px would take 1.8 GB and is simply not kept) and handed to the next run
of the same (data, seed, epoch): the same uint8 pixels, so the same numbers, bit for bit (tests/test_view_cache.py
trains with and without them). An epoch that stops part-way (a defective teacher at its threshold, ctrl-c) is
never kept.
"""
from __future__ import annotations

import numpy as np

from .memo import ArrayMemo, file_identity, rows_digest

VIEWS = ArrayMemo("training views")


def views_key(cache_path, rows: np.ndarray, seed: int, epoch: int, size: int, augment: dict) -> tuple:
    """What an epoch's views depend on: the decoded cache (its path is content-addressed; its identity tells a
    cache rebuilt in place), the training rows, the seed, the epoch, the size and the augmentation (its version
    and policy)."""
    return (*file_identity(cache_path), rows_digest(rows), int(seed), int(epoch), int(size),
            repr(sorted(augment.items())))
