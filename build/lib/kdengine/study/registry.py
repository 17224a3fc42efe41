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
    path = study_dir(store, study.name) / "study.json"
    previous = read_json(path) or {}
    write_json(path, {
        "name": study.name, "source": study.source, "description": study.description,
        "created": previous.get("created", time.time()), "updated": time.time(),
        "seeds": study.seeds, "config": study.raw,
        "runs": [{"run_id": p.run_id, "roles": sorted(p.roles), "strategies": sorted(p.strategies),
                  "model": p.spec.model, "seed": p.spec.seed, "kind": p.spec.kind} for p in plan],
    })
    return path


def load_study_record(store: RunStore, name: str) -> dict | None:
    return read_json(study_dir(store, name) / "study.json")


def list_studies(store: RunStore) -> list[str]:
    root = store.root / "studies"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "study.json").is_file())
