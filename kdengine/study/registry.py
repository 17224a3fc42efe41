"""A study's record in the run store: ``studies/<name>/study.json`` (no torch)."""
from __future__ import annotations

import time
from pathlib import Path

from ..atomic import write_json
from ..store import RunStore
from ..store.runstore import read_json
from .expand import PlannedRun
from .schema import StudyConfig


def study_dir(store: RunStore, name: str) -> Path:
    return store.root / "studies" / name


def save_study(store: RunStore, study: StudyConfig, plan: list[PlannedRun]) -> Path:
    """Record a study: its runs are the union of every request made of it (a ``--set seeds=[4]`` adds seed 4's
    runs; it never makes the finished seed-0 runs vanish from the study they belong to)."""
    path = study_dir(store, study.name) / "study.json"
    previous = load_study_record(store, study.name) or {}
    runs: dict[str, dict] = {p["run_id"]: dict(p) for p in previous.get("runs", [])
                             if isinstance(p, dict) and "run_id" in p}
    for p in plan:
        entry = {"run_id": p.run_id, "roles": sorted(p.roles), "strategies": sorted(p.strategies),
                 "model": p.spec.model, "seed": p.spec.seed, "kind": p.spec.kind}
        old = runs.get(p.run_id)
        if old is not None:  # asked for again, maybe in another role: it keeps every role it was given
            entry["roles"] = sorted(set(old.get("roles", ())) | set(entry["roles"]))
            entry["strategies"] = sorted(set(old.get("strategies", ())) | set(entry["strategies"]))
        runs[p.run_id] = entry
    seeds = sorted({*previous.get("seeds", []), *study.seeds})
    axes: dict[str, list] = {k: list(v) for k, v in (previous.get("axes") or {}).items() if isinstance(v, list)}
    for a in study.axes:  # a sweep's axes, every value ever asked for (what the sweep tables lay out)
        axes.setdefault(a.key, [])
        axes[a.key] += [v for v in a.values if v not in axes[a.key]]
    requests = [*previous.get("requests", []), {"at": time.time(), "seeds": study.seeds, "config": study.raw}]
    write_json(path, {
        "name": study.name, "source": study.source, "description": study.description,
        "created": previous.get("created", time.time()), "updated": time.time(),
        "seeds": seeds, "axes": axes, "config": study.raw, "requests": requests, "runs": list(runs.values()),
    })
    return path


def load_study_record(store: RunStore, name: str) -> dict | None:
    record = read_json(study_dir(store, name) / "study.json")
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        return None
    return record


def list_studies(store: RunStore) -> list[str]:
    root = store.root / "studies"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "study.json").is_file())


_MEMBERSHIP: dict[str, tuple] = {}


def study_membership(store: RunStore) -> dict[str, tuple[str, ...]]:
    """run id -> the studies it belongs to (studies/*/study.json, re-read only when one changed: polled often)."""
    names = list_studies(store)
    stamp = []
    for name in names:
        try:
            stamp.append((name, (study_dir(store, name) / "study.json").stat().st_mtime_ns))
        except OSError:
            stamp.append((name, 0))
    cached = _MEMBERSHIP.get(str(store.root))
    if cached and cached[0] == stamp:
        return cached[1]
    out: dict[str, list[str]] = {}
    for name in names:
        record = load_study_record(store, name) or {}
        for p in record.get("runs", []):
            if isinstance(p, dict) and "run_id" in p:
                out.setdefault(p["run_id"], []).append(name)
    membership = {k: tuple(v) for k, v in out.items()}
    _MEMBERSHIP[str(store.root)] = (stamp, membership)
    return membership
