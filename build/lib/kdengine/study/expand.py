"""Expanding a study into runs: every block's teacher x student pairs per seed, every student's
baseline, each teacher once; ordered so that teachers run before their students (no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data.spec import DataConfig
from ..runspec import KDConfig, RunSpec, TrainConfig, baseline_of, build_specs, ce_spec
from .schema import StudyConfig


@dataclass
class PlannedRun:
    spec: RunSpec
    roles: set[str] = field(default_factory=set)  # teacher, baseline, student
    strategies: set[str] = field(default_factory=set)  # the blocks that asked for it

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def configs(study: StudyConfig) -> tuple[DataConfig, TrainConfig, KDConfig]:
    d, t, k = study.data, study.train, study.kd
    data = DataConfig(spec=d["spec"], task=d["task"], val_fraction=d["val_fraction"], split_seed=d["split_seed"],
                      cap_train=d["cap_train"] or None, cap_test=d["cap_test"] or None, skip_bad=d["skip_bad"]).resolved()
    train = TrainConfig(epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"], optimizer=t["optimizer"],
                        weight_decay=t["weight_decay"], momentum=t["momentum"], schedule=t["schedule"],
                        step_size=t["step_size"], gamma=t["gamma"], grad_clip=t["grad_clip"], patience=t["patience"],
                        image_size=d["image_size"])
    kd = KDConfig(alpha=k["alpha"], temperature=k["temperature"], reduction=k["reduction"], tf_a=k["tf_a"],
                  tf_temperature=k["tf_temperature"])
    return data, train, kd


def expand(study: StudyConfig) -> list[PlannedRun]:
    data, train, kd = configs(study)
    pretrained = bool(study.train["pretrained"] or study.train["pretrained_from"])
    pretrained_from = study.train["pretrained_from"] or None
    plan: dict[str, PlannedRun] = {}

    def add(spec: RunSpec, role: str, strategy: str) -> None:
        item = plan.setdefault(spec.run_id, PlannedRun(spec))
        item.roles.add(role)
        item.strategies.add(strategy)

    for seed in study.seeds:
        common = dict(seed=seed, pretrained=pretrained, pretrained_from=pretrained_from)
        for model in study.teachers:
            add(ce_spec(model, data, train, **common), "teacher", "normal")
        for block in study.experiments:
            pairs = [[t] for t in block.teachers] if block.strategy != "ensemble" else [block.teachers]
            if not block.teachers:
                pairs = [[]]
            for teachers in pairs:
                for student in block.students:
                    spec = build_specs(block.strategy, student, teachers, data, train, kd,
                                       defect_acc=study.kd["defect_acc"],
                                       defect_check_every=study.kd["defect_check_every"], **common)
                    if spec.kind == "ce":  # a "baseline" block
                        add(spec, "baseline", "baseline")
                        continue
                    for t in spec.teachers:
                        add(t, "teacher", block.strategy)
                    add(spec, "student", block.strategy)
                    base = baseline_of(spec) or ce_spec(student, data, train, **common)
                    add(base, "baseline", "baseline")
    # teachers and baselines (cross-entropy runs) first, then the students
    return sorted(plan.values(), key=lambda p: (p.spec.kind != "ce", p.spec.defect_acc is None, 0))
