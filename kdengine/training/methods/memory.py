"""What a run's method adds to its GPU memory beside the student and its teachers (the packing ledger's estimate,
``training/memory.py``): adapters and heads with their gradients and optimiser state, the teacher's feature maps a
feature method keeps for the loss, and CRD's gathered negatives and memory banks. Counted from the models' shapes
on the meta device; an over-count is the safe side."""
from __future__ import annotations

import math

from ... import method_catalog as catalog
from .base import ModelShape
from .taps import matching_stage, student_stages

FLOAT = 4


def _map_bytes(shape: ModelShape, stage: int, batch: int, size: int) -> int:
    side = max(1, math.ceil(size / shape.stage_reductions[stage]))
    return batch * shape.stage_channels[stage] * side * side * FLOAT


def method_extra_bytes(kd, student: ModelShape, teachers: list[ModelShape], batch: int, size: int,
                       optimizer_states: int = 2, n_train: int | None = None) -> int:
    """Bytes the method of ``kd`` adds at its peak (``n_train``: the training split's size, for CRD's banks; where
    it is not known, the banks are left out and the negatives counted)."""
    info = catalog.get(kd.method)
    if info is None or not info.needs_network:
        return 0
    total = 0
    if info.needs == catalog.FEATURES:
        stages = student_stages(kd, student)
        for t in teachers:
            for s in stages:
                t_stage = matching_stage(s, student, t)
                total += _map_bytes(t, t_stage, batch, size)  # the teacher's map, copied out of inference mode
                if kd.method == "fitnet":
                    c_s, c_t = student.stage_channels[s], t.stage_channels[t_stage]
                    total += (c_s * c_t + 3 * c_t) * FLOAT * (2 + optimizer_states)  # the regressor
                    total += 3 * _map_bytes(t, t_stage, batch, size)  # its conv, norm and activation, kept for backward
    elif kd.method == "crd":
        dim, k = kd.crd_dim, kd.crd_negatives if n_train is None else min(kd.crd_negatives, max(1, n_train - 1))
        for t in teachers:
            total += (student.embedding_dim + t.embedding_dim + 2) * dim * FLOAT * (2 + optimizer_states)  # heads
            total += 2 * 2 * batch * (k + 1) * dim * FLOAT  # both gathers of bank rows, kept for backward
            total += 2 * n_train * dim * FLOAT if n_train else 0  # the two banks
    else:  # rkd, pkt: the batch's relations (B^3 angles at most)
        total += len(teachers) * 4 * batch ** 3 * FLOAT
    return total
