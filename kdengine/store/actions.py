"""What may be done to a run, decided once for the CLI, kdtui and scripts (no torch): stop, retry, delete, archive.

``why_not(action, state, ...)`` is None when the action is allowed, else the reason in a few words; a batch (every
run a filter, a study or a state selects) is split the same way by :func:`plan`: the runs it applies to, and the
others with their reasons, which every front end reports as skipped rather than failing the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED

ACTIONS = ("stop", "retry", "delete", "archive")


def why_not(action: str, state: str, damage: str | None = None, readable: bool = True,
            force: bool = False) -> str | None:
    """None when ``action`` may be done to a run in ``state`` (``damage``: why its results cannot be read;
    ``readable``: its spec can be; ``force``: retry a finished run whose results are damaged), else why not."""
    if action == "stop":
        return None if state in (RUNNING, QUEUED) else f"{state}: nothing to stop"
    if action == "retry":
        if not readable:
            return f"cannot be retried: {damage}"
        if state in (QUEUED, RUNNING):
            return f"already {state}"
        if state in (FAILED, STOPPED):
            return None
        if state == FINISHED and damage:
            return None if force else f"finished but {damage}: retry with force to train it again"
        return "finished: its results stay"
    if action in ("delete", "archive"):
        return "running: stop it first" if state == RUNNING else None
    raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")


def actions_for(record, force: bool = False) -> dict[str, str | None]:
    """Every action for one run (a store.records.RunRecord): None where allowed, else why not."""
    return {a: why_not(a, record.state, record.damage, record.spec is not None, force) for a in ACTIONS}


@dataclass
class Plan:
    action: str
    apply: list[str] = field(default_factory=list)  # run ids the action applies to
    skipped: dict[str, str] = field(default_factory=dict)  # run id -> why not


def plan(records, action: str, force: bool = False) -> Plan:
    """A batch: which of ``records`` the action applies to, and why the others are skipped."""
    out = Plan(action)
    for r in records:
        why = why_not(action, r.state, r.damage, r.spec is not None, force)
        if why is None:
            out.apply.append(r.run_id)
        else:
            out.skipped[r.run_id] = why
    return out


@dataclass(frozen=True)
class Removal:
    """What deleting a run takes with it: its folder's size, its checkpoints' share, the runs that use it as a
    teacher (they could not resume or be re-evaluated without it)."""

    run_id: str
    bytes: int
    checkpoint_bytes: int
    dependents: list[str] = field(default_factory=list)


def removal(store, run_id: str) -> Removal:
    """What goes with a run (``store``: a RunStore)."""
    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0

    return Removal(run_id, size(store.run_dir(run_id)), size(store.checkpoint_dir(run_id)), store.dependents(run_id))
