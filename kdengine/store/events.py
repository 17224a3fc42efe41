"""The event log's records, typed: one dataclass per event type, the constructors writers use and the readers
the store view, the figures, MLflow and the CLI use (no torch).

``events.jsonl`` stays plain JSON, one object per line with ``t`` and ``type``; :func:`parse` turns a line's
object into its dataclass (unknown fields are kept in ``extra``, missing ones take their defaults, so
logs written by older versions read too). docs/run-store.md's table of events is tested against
:data:`EVENTS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass
class Event:
    TYPE: ClassVar[str] = ""
    t: float | None = None  # unix time, set by the store when the event is appended
    extra: dict = field(default_factory=dict)  # fields this version does not declare

    def to_dict(self) -> dict[str, Any]:
        out = {"type": self.TYPE}
        for f in fields(self):
            if f.name in ("t", "extra"):
                continue
            value = getattr(self, f.name)
            if value is not None or f.name in self.ALWAYS:
                out[f.name] = value
        return {**out, **self.extra}

    ALWAYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k != "type"}
        return cls(**known, extra=extra)


@dataclass
class Lifecycle(Event):
    TYPE: ClassVar[str] = "lifecycle"
    ALWAYS: ClassVar[tuple[str, ...]] = ("reason",)
    state: str = "queued"  # a lifecycle.State
    reason: str | None = None
    worker: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    host: str | None = None
    device: str | None = None
    resumed_from: str | None = None
    requeued_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.state == "running":  # a claim says what it resumed from, null for a fresh run
            out.setdefault("resumed_from", self.resumed_from)
        return out


@dataclass
class Start(Event):
    TYPE: ClassVar[str] = "start"
    epochs: int = 0
    steps_per_epoch: int = 0
    train_images: int = 0
    val_images: int = 0
    test_images: int = 0
    params: int = 0
    device: str = ""
    trained_on: dict = field(default_factory=dict)
    threads: int = 0
    classes: list = field(default_factory=list)
    teachers: list = field(default_factory=list)
    synthetic: bool = False
    augment: str | None = None
    eval_batch: int | None = None
    prepare_s: float | None = None


@dataclass
class Step(Event):
    TYPE: ClassVar[str] = "step"
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss: float = float("nan")
    terms: dict = field(default_factory=dict)
    lr: float | None = None


@dataclass
class Epoch(Event):
    TYPE: ClassVar[str] = "epoch"
    epoch: int = 0
    lr: float | None = None
    train: dict = field(default_factory=dict)  # loss, accuracy, macro_f1
    val: dict = field(default_factory=dict)  # loss, accuracy, macro_f1, kappa, ece, agreement
    val_confusion: list | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    teacher_outputs: str | None = None  # computed | shared (KD runs)
    timing: dict = field(default_factory=dict)  # train_s, first_batch_s, val_s, images
    epoch_s: float | None = None  # this epoch alone: its training and its validation
    seconds: float | None = None  # since the run (in this process) started


@dataclass
class DefectCheck(Event):
    TYPE: ClassVar[str] = "defect_check"
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    val_accuracy: float = 0.0


@dataclass
class Defect(Event):
    TYPE: ClassVar[str] = "defect"
    threshold: float = 0.0
    val_accuracy: float = 0.0
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    reached: bool = False


@dataclass
class Resume(Event):
    TYPE: ClassVar[str] = "resume"
    epoch: int = 0


@dataclass
class Warning(Event):  # noqa: A001 - the event's own name
    TYPE: ClassVar[str] = "warning"
    message: str = ""


@dataclass
class EarlyStop(Event):
    TYPE: ClassVar[str] = "early_stop"
    epoch: int = 0


@dataclass
class Final(Event):
    TYPE: ClassVar[str] = "final"
    test: dict = field(default_factory=dict)  # accuracy, macro_f1, kappa, ece
    test_confusion: list | None = None


EVENTS: dict[str, type[Event]] = {cls.TYPE: cls for cls in (Lifecycle, Start, Step, Epoch, DefectCheck, Defect,
                                                            Resume, Warning, EarlyStop, Final)}


@dataclass
class Unknown(Event):
    TYPE: ClassVar[str] = "?"
    kind: str = ""


def parse(d: dict) -> Event:
    """One event log line's object as its dataclass."""
    cls = EVENTS.get(d.get("type", ""))
    if cls is None:
        return Unknown(t=d.get("t"), kind=str(d.get("type")), extra={k: v for k, v in d.items() if k != "type"})
    return cls.from_dict(d)


def parse_all(lines: list[dict]) -> list[Event]:
    return [parse(d) for d in lines]


# -- readers ---------------------------------------------------------------------------------------------------
def epochs(events: list[Event]) -> list[Epoch]:
    """The epochs in order; after a resume an epoch may be logged twice: the last one wins."""
    by_epoch = {e.epoch: e for e in events if isinstance(e, Epoch)}
    return [by_epoch[k] for k in sorted(by_epoch)]


def train_loss_key(epochs_: list[Epoch]) -> str:
    """"ce" when every epoch recorded its train cross-entropy, else "loss". A KD run minimises CE and KD terms
    weighted: its "loss" does not compare with val's, its "ce" does (runs recorded before "ce" have "loss" only)."""
    return "ce" if epochs_ and all("ce" in e.train for e in epochs_) else "loss"


def start(events: list[Event]) -> Start | None:
    """The latest start (a resumed run starts again)."""
    return next((e for e in reversed(events) if isinstance(e, Start)), None)


def warnings(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Warning)]


def declared_fields() -> dict[str, list[str]]:
    """Each event type's fields, as docs/run-store.md lists them."""
    return {name: [f.name for f in fields(cls) if f.name not in ("t", "extra")] for name, cls in EVENTS.items()}
