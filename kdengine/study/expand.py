"""Expanding a study into runs: every block's teacher x student pairs per seed, every student's
baseline, each teacher once; ordered so that teachers run before their students (no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import strategy_catalog as catalog
from ..runspec import RunSpec, baseline_of, build_specs, ce_spec
from .axes import axis_value
from .schema import StudyConfig


@dataclass
class PlannedRun:
    spec: RunSpec
    roles: set[str] = field(default_factory=set)  # teacher, baseline, student
    strategies: set[str] = field(default_factory=set)  # the blocks that asked for it

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def expand(study: StudyConfig) -> list[PlannedRun]:
    """Every run the study asks for, once: runs are keyed by id (a content hash of the spec), so a teacher or a
    baseline that several blocks, or several points of a sweep, ask for is one run."""
    plan: dict[str, PlannedRun] = {}

    def add(spec: RunSpec, role: str, strategy: str) -> None:
        item = plan.setdefault(spec.run_id, PlannedRun(spec))
        item.roles.add(role)
        item.strategies.add(strategy)

    for seed in study.seeds:
        for s in study.top_settings:
            for model in study.teachers:
                add(ce_spec(model, s.data, s.teacher_train or s.train, seed), "teacher", "normal")
        for block in study.experiments:
            joint = catalog.get(block.strategy).joint_teachers  # several teachers teach together: one set
            pairs = [block.teachers] if joint else [[t] for t in block.teachers] or [[]]
            for s in block.settings:
                for teachers in pairs:
                    for student in block.students:
                        spec = build_specs(block.strategy, student, teachers, s.data, s.train, s.kd, seed,
                                           teacher_train=s.teacher_train)
                        if spec.kind == "ce":  # a "baseline" block
                            add(spec, "baseline", "baseline")
                            continue
                        for t in spec.teachers:
                            add(t, "teacher", block.strategy)
                        add(spec, "student", block.strategy)
                        add(baseline_of(spec), "baseline", "baseline")
    # cross-entropy runs (teachers and baselines) first, defective ones before normal ones, then the students
    return sorted(plan.values(), key=lambda p: (p.spec.kind != "ce", p.spec.regime != "defective"))


@dataclass(frozen=True)
class UnreadAxis:
    """An axis of a block that its students of one method do not read: they are one run per seed, trained once
    and on no point of that axis (tf-reg's students and kd.temperature; a feature method's and kd.temperature; a
    baseline block's students, which have no method, and any kd axis)."""
    key: str
    strategy: str
    method: str | None  # None: a baseline block's students (cross-entropy runs)


def unread_axes(study: StudyConfig, plan: list[PlannedRun]) -> list[UnreadAxis]:
    """What a sweep does not change, per block and method: said rather than left as a table of identical points."""
    out = []
    for block in study.experiments:
        plain = not catalog.get(block.strategy).distills  # a baseline block: its students are cross-entropy runs
        mine = [p.spec for p in plan if ("baseline" if plain else "student") in p.roles and p.spec.model in
                block.students and (plain or p.spec.strategy == block.strategy)]
        for key in [a.key for a in block.axes]:
            idle = sorted({s.method or "" for s in mine if axis_value(s, key) is None})
            out += [UnreadAxis(key, block.strategy, method or None) for method in idle]
    return list(dict.fromkeys(out))
