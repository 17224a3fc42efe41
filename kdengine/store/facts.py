"""What a run is, as facts (no torch): its data (and whether it is synthetic), the settings it changed from the
defaults, its KD settings, its teachers and its baseline with how they stand. ``runs show`` and kdtui's Details
pane each say them their own way."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..options import identity_values
from ..runspec import ce_spec
from .lifecycle import State
from .records import flat_settings, read_record
from .runstore import RunStore


@dataclass(frozen=True)
class TeacherFact:
    run_id: str
    model: str
    defect_acc: float | None  # a defective teacher's threshold (it stops at this val accuracy); None: a normal one
    state: State | None  # None: not in the store
    test_accuracy: float | None


@dataclass(frozen=True)
class BaselineFact:
    run_id: str
    state: State | None  # None: not in the store
    test_accuracy: float | None  # once it finished
    gain: float | None  # the run's test accuracy over it, once both finished


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    damage: str | None = None  # why its files cannot be read as a run's (then nothing else is known)
    data: str = ""  # its data source
    synthetic: bool = False  # generated images, not real radiographs
    changed: dict[str, Any] = field(default_factory=dict)  # the settings it changed from the defaults (dotted keys)
    seed: int | None = None
    kd: dict[str, Any] | None = None  # the KD settings its strategy uses (a teacher's threshold is its teacher's)
    teachers: list[TeacherFact] = field(default_factory=list)
    baseline: BaselineFact | None = None


def run_facts(store: RunStore, run_id: str) -> RunFacts:
    record = read_record(store, run_id)
    if record.spec is None:
        return RunFacts(run_id, damage=record.damage)
    spec = record.spec
    flat = flat_settings(spec)
    defaults = flat_settings(ce_spec(spec.model, type(spec.data)(), type(spec.train)(), spec.seed))  # same layout
    changed = {k: v for k, v in flat.items() if k in defaults and defaults[k] != v and k != "data.source"}
    kd = identity_values(spec.kd, spec.strategy, include_teacher_scope=False) if spec.kd is not None else None
    teachers = []
    for t in spec.teachers:
        there = store.exists(t.run_id)
        accuracy = (store.read_metrics(t.run_id) or {}).get("test", {}).get("accuracy") if there else None
        teachers.append(TeacherFact(t.run_id, t.model, t.defect_acc if t.regime == "defective" else None,
                                    store.read_status(t.run_id).state if there else None, accuracy))
    baseline = None
    if record.baseline_id:
        base = read_record(store, record.baseline_id) if store.exists(record.baseline_id) else None
        gain = record.gain_over(base)
        baseline = BaselineFact(record.baseline_id, base.state if base is not None else None,
                                base.accuracy("test") if gain is not None else None, gain)
    return RunFacts(run_id, data=spec.data.source, synthetic=spec.data.source.startswith("synthetic"),
                    changed=changed, seed=spec.seed, kd=kd, teachers=teachers, baseline=baseline)
