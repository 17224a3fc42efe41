"""What a run computes, as plain data (no torch): the spec, its identity hash and its id.

A run is either a cross-entropy run (``kind="ce"``: a teacher, or a student's
baseline; they are the same computation) or a distillation run (``kind="kd"``),
which names its teacher(s) by their full specs. The identity covers exactly
what changes the result: the architecture, weights init, data, training
settings, seed, defect threshold and KD settings. Device, trackers and loader
workers are not part of it, so a teacher trained on one machine is reused on
another.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .data.spec import DataConfig
from .errors import UsageError

STRATEGIES = ("baseline", "normal", "reverse", "defective", "tf-self", "tf-reg", "ensemble")
TEACHER_STRATEGIES = ("normal", "reverse", "defective", "ensemble")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
KL_REDUCTIONS = ("batchmean", "mean")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.1
    grad_clip: float = 0.0
    patience: int = 0  # 0: no early stopping
    image_size: int = 64

    def validate(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer '{self.optimizer}' (choose {', '.join(OPTIMIZERS)})")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule '{self.schedule}' (choose {', '.join(SCHEDULES)})")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.patience < 0:
            raise UsageError("weight decay, gradient clipping and patience must not be negative")
        if self.image_size < 8:
            raise UsageError(f"image size {self.image_size} is too small (at least 8)")


@dataclass(frozen=True)
class KDConfig:
    alpha: float = 0.9  # weight of the distillation term (Hinton / Yuan convention)
    temperature: float = 4.0
    reduction: str = "batchmean"  # "mean" reproduces Yuan et al.'s released code
    tf_a: float = 0.9  # tf-reg: probability of the correct class in the virtual teacher
    tf_temperature: float = 1.0  # tf-reg: the virtual teacher's own temperature

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise UsageError(f"temperature must be positive, got {self.temperature}")
        if not self.tf_temperature > 0:
            raise UsageError(f"tf-reg temperature must be positive, got {self.tf_temperature}")
        if not 0.0 < self.tf_a <= 1.0:
            raise UsageError(f"tf-reg correct-class probability must lie in (0, 1], got {self.tf_a}")
        if self.reduction not in KL_REDUCTIONS:
            raise UsageError(f"unknown KL reduction '{self.reduction}' (choose {', '.join(KL_REDUCTIONS)})")


@dataclass(frozen=True)
class RunSpec:
    kind: str  # "ce" or "kd"
    strategy: str  # for ce: "baseline" or "defective"; for kd: the strategy
    model: str
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    pretrained: bool = False
    pretrained_from: str | None = None
    defect_acc: float | None = None  # ce only: stop when val accuracy first reaches it
    defect_check_every: int = 0  # steps between checks; 0: four times per epoch
    kd: KDConfig | None = None
    teachers: tuple["RunSpec", ...] = ()

    # -- identity --------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "kind": self.kind, "model": self.model, "data": asdict(self.data), "train": asdict(self.train),
            "seed": self.seed, "pretrained": self.pretrained,
            "pretrained_from": self.pretrained_from if self.pretrained else None,
        }
        if self.kind == "ce":
            ident["defect_acc"] = self.defect_acc
            if self.defect_acc is not None:
                ident["defect_check_every"] = self.defect_check_every
        else:
            kd = asdict(self.kd or KDConfig())
            if self.strategy != "tf-reg":
                kd.pop("tf_a"), kd.pop("tf_temperature")
            ident["strategy"] = self.strategy
            ident["kd"] = kd
            ident["teachers"] = [t.spec_hash() for t in self.teachers]
        return ident

    def spec_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def run_id(self) -> str:
        model = self.model.replace("/", "_").replace(".", "_")
        if self.kind == "ce":
            label = "defective" if self.defect_acc is not None else "ce"
        else:
            label = self.strategy
        return f"{label}-{model}-s{self.seed}-{self.spec_hash()[:8]}"

    @property
    def teacher(self) -> "RunSpec | None":
        return self.teachers[0] if self.teachers else None

    def describe(self) -> str:
        if self.kind == "ce":
            what = f"defective {self.model} (stop at val acc {self.defect_acc})" if self.defect_acc is not None else f"{self.model} (cross-entropy)"
            return what
        if self.teachers:
            return f"{self.strategy}: {' + '.join(t.model for t in self.teachers)} -> {self.model}"
        return f"{self.strategy}: {self.model}"

    # -- (de)serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["data"] = asdict(self.data)
        d["train"] = asdict(self.train)
        d["kd"] = asdict(self.kd) if self.kd else None
        d["teachers"] = [t.to_dict() for t in self.teachers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"run_id", "spec_hash"}
        if unknown:
            raise UsageError(f"run spec has unknown keys: {', '.join(sorted(unknown))}")
        kw = {k: v for k, v in d.items() if k in known}
        kw["data"] = DataConfig(**d.get("data", {}))
        kw["train"] = TrainConfig(**d.get("train", {}))
        kw["kd"] = KDConfig(**d["kd"]) if d.get("kd") else None
        kw["teachers"] = tuple(cls.from_dict(t) for t in d.get("teachers", ()))
        return cls(**kw)


def ce_spec(model: str, data: DataConfig, train: TrainConfig, seed: int, pretrained: bool = False,
            pretrained_from: str | None = None, defect_acc: float | None = None,
            defect_check_every: int = 0) -> RunSpec:
    return RunSpec(kind="ce", strategy="defective" if defect_acc is not None else "baseline", model=model,
                   data=data, train=train, seed=seed, pretrained=pretrained, pretrained_from=pretrained_from,
                   defect_acc=defect_acc, defect_check_every=defect_check_every if defect_acc is not None else 0)


def build_specs(strategy: str, student: str, teachers: list[str] | tuple[str, ...], data: DataConfig,
                train: TrainConfig, kd: KDConfig, seed: int, pretrained: bool = False,
                pretrained_from: str | None = None, defect_acc: float = 0.5,
                defect_check_every: int = 0) -> RunSpec:
    """The student run a strategy asks for; its teacher specs are nested inside it.

    Teachers are trained with the student's data, settings and seed, which is
    what makes a normally trained teacher and a baseline the same run.
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy '{strategy}' (choose {', '.join(STRATEGIES)})")
    train.validate()
    kd.validate()
    teachers = [t for t in teachers if t]
    if strategy in ("baseline", "tf-self", "tf-reg") and teachers:
        raise UsageError(f"strategy {strategy} takes no --teacher"
                         + (" (its teacher is a copy of the student)" if strategy == "tf-self" else ""))
    if strategy in TEACHER_STRATEGIES and not teachers:
        raise UsageError(f"strategy {strategy} needs --teacher")
    if strategy != "ensemble" and len(teachers) > 1:
        raise UsageError(f"strategy {strategy} takes one teacher; use ensemble for several")
    if strategy == "defective" and not 0.0 < defect_acc <= 1.0:
        raise UsageError(f"defect accuracy must lie in (0, 1], got {defect_acc}")
    common = dict(data=data, train=train, seed=seed, pretrained=pretrained, pretrained_from=pretrained_from)
    if strategy == "baseline":
        return ce_spec(student, **common)
    if strategy == "tf-self":
        teacher_specs = (ce_spec(student, **common),)
    elif strategy == "tf-reg":
        teacher_specs = ()
    elif strategy == "defective":
        teacher_specs = (ce_spec(teachers[0], defect_acc=defect_acc, defect_check_every=defect_check_every, **common),)
    else:
        teacher_specs = tuple(ce_spec(t, **common) for t in teachers)
    return RunSpec(kind="kd", strategy=strategy, model=student, kd=kd, teachers=teacher_specs, **common)


def baseline_of(spec: RunSpec) -> RunSpec | None:
    """The student trained alone (same data, settings, seed): what a KD run is compared with.

    None for cross-entropy runs (they are baselines) and for tf-self, whose teacher is that baseline.
    """
    if spec.kind != "kd" or spec.strategy == "tf-self":
        return None
    return ce_spec(spec.model, spec.data, spec.train, spec.seed, spec.pretrained, spec.pretrained_from)
