"""Queueing runs (no torch: the TUI queues runs through this)."""
from __future__ import annotations

from ..runspec import RunSpec
from .runstore import RunStore


def enqueue(store: RunStore, spec: RunSpec) -> str:
    """Write ``spec`` (and its teachers, first) into the store as queued runs, unless they exist.

    A failed or stopped run that is asked for again is queued again (it resumes).
    """
    for t in spec.teachers:
        enqueue(store, t)
    created = store.create(spec.to_dict(), spec.run_id, spec.spec_hash(), spec.describe())
    if not created:
        store.requeue(spec.run_id)
    return spec.run_id
