"""Queueing runs, and which teacher a run reuses or why it trains a new one (no torch: the TUI queues runs
through this)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..runspec import RunSpec, baseline_of, differences
from .lifecycle import FINISHED, State
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


@dataclass(frozen=True)
class TeacherPlan:
    """What becomes of one teacher of a run about to be queued or trained: a finished run reused, a run already in
    the store finished first, or a new one trained; for a new one, the closest finished run of the same model,
    seed and data, and the settings it differs in (the front end says how to distil from it instead)."""

    run_id: str
    model: str
    seed: int
    state: State | None  # None: not in the store yet (a new teacher)
    reused: bool  # finished, with metrics: reused as it is
    closest: str | None = None  # a new teacher: the finished run that comes closest
    differs: list[str] = field(default_factory=list)  # the settings the closest differs in ("train.epochs 1→2")


def teacher_plans(store: RunStore, spec: RunSpec) -> list[TeacherPlan]:
    """For each teacher of ``spec``: whether it is reused, finished first, or trained new (and the closest run)."""
    plans = []
    for t in spec.teachers:
        rid = t.run_id
        if not store.exists(rid):
            best = _closest_finished(store, t)
            plans.append(TeacherPlan(rid, t.model, t.seed, None, False, best[0].run_id if best else None,
                                     best[1] if best else []))
            continue
        state = store.read_status(rid).state
        reused = state == FINISHED and store.read_metrics(rid) is not None
        plans.append(TeacherPlan(rid, t.model, t.seed, state, reused))
    return plans


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
