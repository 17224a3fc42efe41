"""What a run computes, as plain data (no torch): the configs, the run spec, its identity and its id.

A run is either a cross-entropy run (``kind == "ce"``: a teacher, or a student's baseline; they
are the same computation) trained in a *regime* (``normal``, or ``defective``: stopped at a val
accuracy), or a distillation run (``kind == "kd"``) with a *strategy* from the catalogue, which
names its teachers by their full specs. The identity covers exactly what changes the result: the
architecture, the data, the training settings, the seed, the regime and the KD settings. Device,
trackers and loader workers are not part of it, so a teacher trained on one machine is reused on
another.

The spec's layout is the study file's layout: ``data`` is ``[data]``, ``train`` is ``[train]``,
``kd`` is ``[kd]``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import method_catalog as methods
from . import strategy_catalog as catalog
from .data.config import DataConfig
from .errors import UsageError
from .options import check_fields, check_value, config_dict, identity_values, info, infos, option, parse_assignment

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
KL_REDUCTIONS = ("batchmean", "mean")
MAX_SEED = 2**32 - 1
STORE_VERSION = 3  # 2: data.source, data.image_size, train.pretrained*, ce regime (ids unchanged from 1); 3: kd.method
# and its options (ids unchanged at their defaults); a setting a run does not read (tf-reg's kd.temperature, Adam's
# momentum) is held at its default in its identity: a run that had a non-default value there has a new id


@dataclass(frozen=True)
class TrainConfig:
    SECTION: ClassVar[str] = "train"

    epochs: int = option(10, "training epochs", low=1, high=100_000)
    batch_size: int = option(32, "images per optimisation step", low=1, high=65_536, label="Batch size")
    lr: float = option(1e-3, "learning rate", low=0.0, low_open=True, high=10.0, label="Learning rate")
    optimizer: str = option("adam", "the optimiser", choices=OPTIMIZERS)
    weight_decay: float = option(0.0, "weight decay", low=0.0, high=1.0, advanced=True)
    momentum: float = option(0.9, "SGD momentum", low=0.0, high=1.0, advanced=True)
    schedule: str = option("constant", "learning-rate schedule", choices=SCHEDULES, advanced=True)
    step_size: int = option(10, "epochs between decays (step schedule)", low=1, advanced=True)
    gamma: float = option(0.1, "decay factor (step schedule)", low=0.0, low_open=True, high=1.0, advanced=True)
    grad_clip: float = option(0.0, "max gradient norm; 0: off", low=0.0, advanced=True)
    patience: int = option(0, "early-stopping patience in epochs; 0: off", low=0, advanced=True)
    pretrained: bool = option(False, "start from ImageNet weights (3 replicated channels)")
    pretrained_from: str | None = option(None, "local weights file or folder (no network); implies pretrained",
                                         advanced=True, label="Weights from", metavar="PATH")

    def reads(self, key: str, strategy: str | None = None) -> bool:
        """Whether a run with these settings reads ``key``: SGD alone has a momentum, the step schedule alone a
        step size and a decay factor (a run's identity holds the others at their defaults)."""
        if key == "momentum":
            return self.optimizer == "sgd"
        if key in ("step_size", "gamma"):
            return self.schedule == "step"
        return True

    def __post_init__(self) -> None:
        check_fields(self)
        if self.pretrained_from:  # a local weights file implies pretrained; keep the path absolute
            object.__setattr__(self, "pretrained_from", os.path.abspath(os.path.expanduser(self.pretrained_from)))
            object.__setattr__(self, "pretrained", True)


def stage_choice(text: str, word: str) -> list[int] | None:
    """A feature-stage option's value: ``word`` (the method's default stages: None) or stage indices ``"1,3"``;
    UsageError in one line when it is neither. Whether the stages exist depends on the model (preflight)."""
    if text.strip().lower() == word:
        return None
    try:
        stages = [int(part) for part in text.split(",")]
    except ValueError:
        stages = []
    if not stages or any(i < 0 for i in stages):
        raise ValueError
    return stages


@dataclass(frozen=True)
class KDConfig:
    """The distillation settings: the method and its hyperparameters, and the strategies' own (the defect rule,
    tf-reg's virtual teacher). Each option says who reads it (``strategies``, ``method_catalog`` for the methods'
    options, and ``strategy_catalog``'s ``temperature`` where a strategy's teacher brings its own T): a run's
    identity holds only what the run reads (:meth:`reads`; tests/test_run_reads.py checks it against the loss)."""
    SECTION: ClassVar[str] = "kd"

    method: str = option("hinton", "how the student learns from its teacher (kdengine study schema lists the methods)",
                         since=3, label="Method", menu=methods.names)
    alpha: float = option(0.9, "hinton: weight of the distillation term (Hinton / Yuan convention)", low=0.0, high=1.0,
                          label="Alpha (KD)")
    temperature: float = option(4.0, "softening temperature T (hinton, dkd, dist; tf-reg uses its own)", low=0.0,
                                low_open=True, high=1000.0, short="-T")
    reduction: str = option("batchmean", "hinton: KL reduction, batchmean (Hinton) or mean (Yuan et al.'s released "
                            "code)", choices=KL_REDUCTIONS, flag="--kl-reduction", advanced=True)
    defect_acc: float = option(0.5, "defective teacher: stop when its val accuracy first reaches this", low=0.0,
                               low_open=True, high=1.0, strategies=("defective",), scope="teacher",
                               label="Defect acc")
    defect_check_every: int = option(0, "defective teacher: steps between checks; 0: four per epoch", low=0,
                                     strategies=("defective",), scope="teacher", advanced=True)
    tf_a: float = option(0.9, "tf-reg: the virtual teacher's probability on the correct class", low=0.0,
                         low_open=True, high=1.0, strategies=("tf-reg",), advanced=True)
    tf_temperature: float = option(1.0, "tf-reg: the virtual teacher's own temperature (also the loss's T)", low=0.0,
                                   low_open=True, high=1000.0, strategies=("tf-reg",), advanced=True)
    # -- logit standardisation (Sun et al., CVPR 2024): a modifier of hinton, dkd and dist
    logit_standardize: bool = option(False, "z-score both logits before softening (Sun et al. 2024); the base "
                                     "temperature replaces T", since=3, advanced=True, label="Logit std.")
    ls_temperature: float = option(2.0, "logit standardisation: the base temperature (the authors' 2)", low=0.0,
                                   low_open=True, high=1000.0, since=3, advanced=True)
    ls_weight: float = option(10.0, "logit standardisation: multiplies the distillation terms (10 x hinton's alpha "
                              "0.9 is the authors' KD weight 9)", low=0.0, high=1e6, since=3, advanced=True)
    # -- DKD (Zhao et al., CVPR 2022), defaults of its CIFAR-100 setting
    dkd_alpha: float = option(1.0, "dkd: weight of the target-class term (TCKD)", low=0.0, high=1000.0, since=3,
                              advanced=True)
    dkd_beta: float = option(8.0, "dkd: weight of the non-target-class term (NCKD)", low=0.0, high=1000.0, since=3,
                             advanced=True)
    dkd_warmup: int = option(20, "dkd: epochs over which the DKD term rises linearly to its weight; 0: none", low=0,
                             high=100_000, since=3, advanced=True)
    # -- DIST (Huang et al., NeurIPS 2022), defaults of its CIFAR-100 setting
    dist_beta: float = option(2.0, "dist: weight of the inter-class relation", low=0.0, high=1000.0, since=3,
                              advanced=True)
    dist_gamma: float = option(2.0, "dist: weight of the intra-class relation", low=0.0, high=1000.0, since=3,
                               advanced=True)
    # -- feature methods
    fitnet_stage: str = option("middle", "fitnet: the student stage that gets the hint ('middle', or its index in "
                               "the model's feature_info); the teacher's at the same relative depth", since=3,
                               advanced=True, metavar="STAGE")
    fitnet_weight: float = option(100.0, "fitnet: weight of the hint loss", low=0.0, high=1e6, since=3, advanced=True)
    at_beta: float = option(1000.0, "at: beta (the loss is beta/2 times the sum over stages)", low=0.0, high=1e6,
                            since=3, advanced=True)
    at_p: float = option(2.0, "at: the power p of the attention map", low=0.0, low_open=True, high=8.0, since=3,
                         advanced=True)
    at_stages: str = option("all", "at: the student stages ('all': every stage after the stem, or indices '1,2,3')",
                            since=3, advanced=True, metavar="STAGES")
    rkd_distance: float = option(25.0, "rkd: weight of the distance loss", low=0.0, high=1e6, since=3, advanced=True)
    rkd_angle: float = option(50.0, "rkd: weight of the angle loss", low=0.0, high=1e6, since=3, advanced=True)
    pkt_weight: float = option(30000.0, "pkt: weight of the PKT loss", low=0.0, high=1e9, since=3, advanced=True)
    crd_weight: float = option(0.8, "crd: weight of the contrastive loss", low=0.0, high=1e6, since=3, advanced=True)
    crd_dim: int = option(128, "crd: the embedding's dimension", low=2, high=65_536, since=3, advanced=True)
    crd_negatives: int = option(16384, "crd: negatives per sample (at most the train set's size less one)", low=1,
                                high=10_000_000, since=3, advanced=True)
    crd_temperature: float = option(0.07, "crd: the NCE temperature", low=0.0, low_open=True, high=100.0, since=3,
                                    advanced=True)
    crd_momentum: float = option(0.5, "crd: the memory bank's momentum", low=0.0, high=1.0, since=3,
                                 advanced=True)
    # -- your own method (entry point kdstudy.methods, or --method-file)
    method_file: str | None = option(None, "a local Python file that registers your own method (trusted code: it is "
                                     "imported)", since=3, advanced=True, metavar="PATH")
    method_sha256: str | None = option(None, "the method file's SHA-256 when the run was specified (set for you)",
                                       since=3, advanced=True, hidden=True)
    method_args: str = option("", "your own method's settings, KEY=VALUE[,KEY=VALUE] (read as TOML values)", since=3,
                              advanced=True, metavar="ARGS")

    def __post_init__(self) -> None:
        check_fields(self)
        methods.check_name(self.method, self.method_file)
        for name, word in (("fitnet_stage", "middle"), ("at_stages", "all")):
            try:
                stage_choice(getattr(self, name), word)
            except ValueError:
                raise UsageError(f"kd.{name} must be '{word}' or stage indices such as 1,2, got "
                                 f"{getattr(self, name)!r}", field=name) from None
        if self.method_file:  # kept absolute, and pinned to its content when the run is specified
            path = os.path.abspath(os.path.expanduser(self.method_file))
            object.__setattr__(self, "method_file", path)
            if self.method_sha256 is None:
                object.__setattr__(self, "method_sha256", file_sha256(path))
        method_args_dict(self.method_args)  # one line when malformed

    def reads(self, key: str, strategy: str | None) -> bool:
        """Whether a run of ``strategy`` with these settings reads the option ``key``: the one rule the run's
        identity, a sweep's points and the tables' settings follow."""
        i = info(type(self), key)
        if i.strategies is not None and strategy not in i.strategies:
            return False
        if key in ("method_file", "method_sha256"):  # the file's content is what a run reads, not its path
            return key == "method_sha256" and self.method_sha256 is not None
        own = strategy in catalog.CATALOGUE and catalog.CATALOGUE[strategy].temperature is not None
        by_method = methods.reads(self.method, key, self.logit_standardize, own_temperature=own)
        return True if by_method is None else by_method


def file_sha256(path: str) -> str:
    try:
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError as exc:
        raise UsageError(f"kd.method_file {path} cannot be read ({exc.strerror or exc})", field="method_file") from None


def method_args_dict(text: str) -> dict[str, Any]:
    """``KEY=VALUE[,KEY=VALUE]``: a plugin method's own settings, each value read as TOML data (never code)."""
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        keys, value = parse_assignment(item)
        if len(keys) != 1:
            raise UsageError(f"kd.method_args: '{item}' is not KEY=VALUE", field="method_args")
        out[keys[0]] = value
    return out


CONFIGS = {"data": DataConfig, "train": TrainConfig, "kd": KDConfig}


def _config(cls, value: Any, where: str):
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table of {cls.SECTION} options, got {type(value).__name__}")
    known = {i.name for i in infos(cls)}
    unknown = set(value) - known
    if unknown:
        raise UsageError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    return cls(**value)


@dataclass(frozen=True)
class RunSpec:
    model: str
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    strategy: str | None = None  # KD runs: a catalogue strategy; None for cross-entropy runs
    regime: str | None = None  # cross-entropy runs: "normal" or "defective"
    defect_acc: float | None = None  # defective regime: stop when val accuracy first reaches it
    defect_check_every: int = 0  # defective regime: steps between checks; 0: four per epoch
    kd: KDConfig | None = None
    teachers: tuple["RunSpec", ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip() or len(self.model) > 200:
            raise UsageError(f"model must be a model name, got {self.model!r}", field="student")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"seed must be a whole number in [0, {MAX_SEED}], got {self.seed!r}", field="seed")
        if self.strategy is None:  # cross-entropy
            if self.regime not in catalog.REGIMES:
                raise UsageError(f"a cross-entropy run's regime must be one of {', '.join(catalog.REGIMES)}, "
                                 f"got {self.regime!r}")
            if (self.regime == "defective") != (self.defect_acc is not None):
                raise UsageError("a defective run needs defect_acc, and only a defective run has one")
            if self.defect_acc is not None:
                check_value(_kd_info("defect_acc"), self.defect_acc)
                check_value(_kd_info("defect_check_every"), self.defect_check_every)
            if self.teachers or self.kd is not None:
                raise UsageError("a cross-entropy run has no teachers and no KD settings")
            return
        strat = catalog.get(self.strategy)
        if not strat.distills:
            raise UsageError(f"strategy {self.strategy} is a cross-entropy run; it has no strategy field")
        if self.regime is not None or self.defect_acc is not None:
            raise UsageError("a KD run has no regime of its own (its teachers have)")
        if self.kd is None:
            object.__setattr__(self, "kd", KDConfig())
        methods.check_fits(self.kd.method, self.strategy, strat.teacher_source)
        expected = {"given": None, "self": 1, "virtual": 0}[strat.teacher_source]
        n = len(self.teachers)
        if expected is None:
            catalog.check_teachers(strat, [t.model for t in self.teachers])
        elif n != expected:
            raise UsageError(f"strategy {self.strategy} has {expected} teacher spec(s), got {n}")
        for t in self.teachers:
            if t.kind != "ce":
                raise UsageError("a teacher must be a cross-entropy run")

    # -- derived ---------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "ce" if self.strategy is None else "kd"

    @property
    def teacher(self) -> "RunSpec | None":
        return self.teachers[0] if self.teachers else None

    @property
    def role_label(self) -> str:
        """What the run is, in one word: its KD strategy, or its regime for a cross-entropy run."""
        return self.strategy if self.strategy else ("defective" if self.regime == "defective" else "ce")

    # -- identity --------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What the result depends on, in store version 1's layout, so that run ids stay what they were.

        (Version 1 kept ``image_size`` under ``train`` and ``pretrained*`` at the top, and named the
        data source ``spec``.)"""
        data = identity_values(self.data)
        data["spec"] = data.pop("source")
        image_size = data.pop("image_size")
        train = identity_values(self.train)
        pretrained, pretrained_from = train.pop("pretrained"), train.pop("pretrained_from")
        train["image_size"] = image_size
        ident: dict[str, Any] = {"kind": self.kind, "model": self.model, "data": data, "train": train,
                                 "seed": self.seed, "pretrained": pretrained,
                                 "pretrained_from": pretrained_from if pretrained else None}
        if self.kind == "ce":
            ident["defect_acc"] = self.defect_acc
            if self.defect_acc is not None:
                ident["defect_check_every"] = self.defect_check_every
        else:
            ident["strategy"] = self.strategy
            ident["kd"] = identity_values(self.kd, self.strategy, include_teacher_scope=False)
            ident["teachers"] = [t.spec_hash() for t in self.teachers]
        return ident

    def spec_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def run_id(self) -> str:
        model = self.model.replace("/", "_").replace(".", "_")
        method = f"-{self.method}" if self.method not in (None, methods.DEFAULT) else ""
        return f"{self.role_label}{method}-{model}-s{self.seed}-{self.spec_hash()[:8]}"

    @property
    def method(self) -> str | None:
        """How a KD run learns from its teacher (``kd.method``); None for a cross-entropy run."""
        return self.kd.method if self.kd is not None else None

    def describe(self) -> str:
        if self.kind == "ce":
            if self.regime == "defective":
                return f"defective {self.model} (stop at val acc {self.defect_acc})"
            return f"{self.model} (cross-entropy)"
        how = f"{self.strategy}" + (f" ({self.method})" if self.method != methods.DEFAULT else "")
        if self.teachers:
            return f"{how}: {' + '.join(t.model for t in self.teachers)} -> {self.model}"
        return f"{how}: {self.model}"

    # -- (de)serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "strategy": self.strategy, "regime": self.regime,
                "seed": self.seed, "defect_acc": self.defect_acc, "defect_check_every": self.defect_check_every,
                "data": config_dict(self.data), "train": config_dict(self.train),
                "kd": config_dict(self.kd) if self.kd else None, "teachers": [t.to_dict() for t in self.teachers]}

    @classmethod
    def from_dict(cls, d: Any) -> "RunSpec":
        """Rebuild a spec from spec.json (either store version); UsageError names what is wrong."""
        if not isinstance(d, dict):
            raise UsageError(f"a run spec must be a JSON object, got {type(d).__name__}")
        d = _migrate_v1(dict(d))
        known = {"model", "strategy", "regime", "seed", "defect_acc", "defect_check_every", "data", "train", "kd",
                 "teachers", "kind"}
        unknown = set(d) - known
        if unknown:
            raise UsageError(f"run spec has unknown keys: {', '.join(sorted(unknown))}")
        if "model" not in d:
            raise UsageError("run spec has no model")
        teachers = d.get("teachers") or ()
        if not isinstance(teachers, (list, tuple)):
            raise UsageError("run spec: teachers must be a list")
        try:
            spec = cls(model=d["model"], data=_config(CONFIGS["data"], d.get("data", {}), "data"),
                       train=_config(CONFIGS["train"], d.get("train", {}), "train"), seed=d.get("seed", 0),
                       strategy=d.get("strategy"), regime=d.get("regime"), defect_acc=d.get("defect_acc"),
                       defect_check_every=d.get("defect_check_every", 0),
                       kd=_config(CONFIGS["kd"], d["kd"], "kd") if d.get("kd") else None,
                       teachers=tuple(cls.from_dict(t) for t in teachers))
        except TypeError as exc:  # a value of the wrong shape deep inside
            raise UsageError(f"run spec is malformed: {exc}") from None
        if "kind" in d and d["kind"] != spec.kind:
            raise UsageError(f"run spec says kind {d['kind']!r} but describes a {spec.kind} run")
        return spec


def _kd_info(name: str):
    return next(i for i in infos(KDConfig) if i.name == name)


def _migrate_v1(d: dict) -> dict:
    """Store version 1's spec.json layout -> version 2's (the identity, and so the run id, is the same)."""
    data, train = d.get("data"), d.get("train")
    if isinstance(data, dict) and "spec" in data:
        data = dict(data)
        data["source"] = data.pop("spec")
        d["data"] = data
    if isinstance(train, dict) and "image_size" in train:
        train = dict(train)
        if isinstance(d.get("data"), dict):
            d["data"] = {**d["data"], "image_size": train.pop("image_size")}
        d["train"] = train
    for key in ("pretrained", "pretrained_from"):
        if key in d:
            value = d.pop(key)
            if isinstance(d.get("train"), dict) and (key == "pretrained" or value is not None):
                d["train"] = {**d["train"], key: value}
    if d.get("kind") == "ce" and d.get("strategy") in ("baseline", "defective"):
        d["regime"] = "defective" if d["strategy"] == "defective" else "normal"
        d["strategy"] = None
    return d


# -- building specs -------------------------------------------------------------------------------------------
def ce_spec(model: str, data: DataConfig, train: TrainConfig, seed: int, regime: str = "normal",
            kd: KDConfig | None = None) -> RunSpec:
    """A cross-entropy run; a defective one takes its stop rule from ``kd``'s defect options."""
    if regime == "defective":
        kd = kd or KDConfig()
        return RunSpec(model=model, data=data, train=train, seed=seed, regime="defective",
                       defect_acc=kd.defect_acc, defect_check_every=kd.defect_check_every)
    return RunSpec(model=model, data=data, train=train, seed=seed, regime="normal")


def build_specs(strategy: str, student: str, teachers: list | tuple, data: DataConfig, train: TrainConfig,
                kd: KDConfig, seed: int, teacher_train: TrainConfig | None = None) -> RunSpec:
    """The run a strategy asks for; its teacher specs are nested inside it.

    ``teachers`` holds model names, or finished teacher runs' specs (``--teacher RUN_ID``).
    Teachers named by model are trained with ``teacher_train`` (default: the student's settings,
    which makes a normally trained teacher and a baseline the same run), the same data and seed.
    """
    strat = catalog.get(strategy)
    teachers = [t for t in teachers if t]
    catalog.check_teachers(strat, teachers)
    if not strat.distills:
        return ce_spec(student, data, train, seed)
    t_train = teacher_train or train
    if strat.teacher_source == "self":
        teacher_specs: tuple[RunSpec, ...] = (ce_spec(student, data, t_train, seed),)
    elif strat.teacher_source == "virtual":
        teacher_specs = ()
    else:
        teacher_specs = tuple(_teacher_spec(t, strat, data, t_train, kd, seed) for t in teachers)
    return RunSpec(model=student, data=data, train=train, seed=seed, strategy=strategy, kd=kd, teachers=teacher_specs)


def _teacher_spec(teacher, strat: catalog.Strategy, data: DataConfig, train: TrainConfig, kd: KDConfig,
                  seed: int) -> RunSpec:
    if not isinstance(teacher, RunSpec):
        return ce_spec(teacher, data, train, seed, strat.teacher_regime, kd)
    if teacher.kind != "ce":
        raise UsageError(f"teacher run {teacher.run_id} is a {teacher.strategy} student, not a teacher "
                         "(a teacher is a cross-entropy run)", field="teacher")
    if teacher.regime != strat.teacher_regime:
        raise UsageError(f"strategy {strat.name} needs a {strat.teacher_regime} teacher; run {teacher.run_id} "
                         f"is {teacher.regime}", field="teacher")
    if teacher.data != data:
        diff = ", ".join(differences(teacher.data, data)) or "the data"
        raise UsageError(f"teacher run {teacher.run_id} saw other data ({diff}); a teacher must see the student's "
                         "data", field="teacher")
    return teacher


def baseline_of(spec: RunSpec) -> RunSpec | None:
    """The student trained alone (same data, settings, seed): the one run a KD run is compared with.

    None for cross-entropy runs (they are baselines). For tf-self it is also its teacher, unless the
    teacher was given settings of its own.
    """
    if spec.kind != "kd" or not catalog.get(spec.strategy).baseline:
        return None
    return ce_spec(spec.model, spec.data, spec.train, spec.seed)


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """``key a→b`` for each option that differs between two configs of one class (or two specs' identities)."""
    da = a if isinstance(a, dict) else (a.identity() if isinstance(a, RunSpec) else config_dict(a))
    db = b if isinstance(b, dict) else (b.identity() if isinstance(b, RunSpec) else config_dict(b))
    out = []
    for key in sorted(set(da) | set(db)):
        va, vb = da.get(key), db.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key} {va}→{vb}")
    return out
