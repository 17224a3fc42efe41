"""Queueing runs, and saying which teacher a run reuses or why it trains a new one (no torch: the TUI
queues runs through this)."""
from __future__ import annotations

from ..runspec import RunSpec, baseline_of, differences
from .lifecycle import FINISHED
from .records import readable_key
from .runstore import RunStore


def enqueue(store: RunStore, spec: RunSpec, requeue: bool = True, device: str = "auto") -> str:
    """Write ``spec`` (and its teachers, first) into the store as queued runs asking for ``device``, unless
    they exist.

    Queueing is a person's request (train, study run, the TUI's launch): a failed or stopped run asked
    for again is queued again, and resumes from its last finished epoch (``requeue=False`` leaves it); a
    queued run takes the latest device request.
    """
    for t in spec.teachers:
        enqueue(store, t, requeue, device)
    if not store.create(spec, device) and requeue:
        store.requeue(spec.run_id, device)
    return spec.run_id


def enqueue_with_baseline(store: RunStore, spec: RunSpec, with_baseline: bool = True,
                          device: str = "auto") -> tuple[str, str | None]:
    """Queue a run and, for a KD run, its baseline (the student trained alone); returns both ids."""
    rid = enqueue(store, spec, device=device)
    baseline = baseline_of(spec) if with_baseline else None
    return rid, (enqueue(store, baseline, device=device) if baseline is not None else None)


def teacher_notes(store: RunStore, spec: RunSpec, verb: str = "training", reused: bool = True) -> list[str]:
    """For each teacher: that a finished run is reused (unless ``reused`` is False: training here, the executor
    says it as it reuses the run), or why a new one is trained (and how to reuse one). ``verb``: what happens to a
    new teacher now ("training", or "queueing" when only queued)."""
    notes = []
    for t in spec.teachers:
        rid = t.run_id
        if store.read_status(rid).state == FINISHED and store.read_metrics(rid) is not None:
            if reused:
                notes.append(f"reusing teacher {rid}: finished, with the same architecture, data, settings and "
                             "seed")
            continue
        if store.exists(rid):
            notes.append(f"teacher {rid} is in the store ({store.read_status(rid).state}); it will be finished first")
            continue
        best = _closest_finished(store, t)
        if best is None:
            notes.append(f"{verb} teacher {rid}: no finished {t.model} run with seed {t.seed} on the student's data "
                         f"in {store.root}")
        else:
            other, diff = best
            notes.append(f"{verb} teacher {rid}: the finished {other.run_id} differs in {', '.join(diff)}; "
                         f"to distil from it instead, pass --teacher {other.run_id}")
    return notes


def _closest_finished(store: RunStore, spec: RunSpec) -> tuple[RunSpec, list[str]] | None:
    best = None
    for rid in store.list_ids():
        if not rid.startswith(f"{spec.role_label}-") or store.read_status(rid).state != FINISHED:
            continue
        try:
            other = store.load_spec(rid)
        except Exception:  # noqa: BLE001 - a damaged run is not a candidate
            continue
        # only a run --teacher would accept (runspec._teacher_spec): a hint that fails when followed is no hint
        if other.kind != "ce" or other.model != spec.model or other.regime != spec.regime or other.data != spec.data:
            continue
        diff = [readable_key(d) for d in differences(other.identity(), spec.identity())]
        if best is None or len(diff) < len(best[1]):
            best = (other, diff)
    return best
