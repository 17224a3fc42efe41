"""What the TUI shows, read from the run store (no Textual, no torch: testable on its own).

``RunView`` tails one run's event log from a saved byte offset, so each poll
reads only what was appended since the last one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kdengine.api import FAILED, FINISHED, QUEUED, RUNNING, STOPPED, RunRecord, RunRow, RunStore, collect, run_rows
from kdengine.api import baseline_of
from kdengine.api import events as ev

STATE_ICONS = {QUEUED: "…", RUNNING: "▶", FINISHED: "✓", FAILED: "✗", STOPPED: "■", "damaged": "!"}
SORTS = ("created", "state", "what", "student", "seed", "study", "device", "best val", "test acc", "gain")
NO_STUDY = "(no study)"
# The progress cell while a run is not training: a whole word of at most 5 letters, so that the column never
# widens and never reads as a code ("ev va"); which split is being evaluated is in the line under the list.
PHASES = (("decoding", "load"), ("evaluating", "eval"))


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def study_of(r: RunRow) -> str:
    """The study a row is grouped under: its first, or none."""
    return r.studies[0] if r.studies else NO_STUDY


def who(r: RunRow) -> str:
    return f"{r.teacher} → {r.student}" if r.teacher else r.student


def state_word(r: RunRow) -> str:
    """The state column: a run whose files cannot be read says so (its reason says why) instead of its state."""
    return "damaged" if r.damaged else r.state.value


SHORT = {"teacher+baseline": "teacher/base"}  # the list's words where the column is narrow (Details says it all)


def what_cell(r: RunRow, width: int = 12) -> str:
    """The "what" cell: the run's role and, among look-alike runs (a sweep's points), what sets it apart: the
    point's value is kept whole (normal T=4 → "norm… T=4"), the role gives way."""
    what = SHORT.get(r.what, r.what)
    if not r.point:
        return what[:width]
    point = r.point if len(r.point) < width - 2 else r.point[:width - 3] + "…"
    room = width - len(point) - 1
    return (what if len(what) <= room else what[:max(1, room - 1)] + "…") + " " + point


def epoch_cell(r: RunRow) -> str:
    return f"{r.epoch}/{r.epochs}"


def eta_cell(r: RunRow) -> str:
    return fmt_eta(r.eta_s)


def done_cell(r: RunRow) -> str:
    """The progress cell (5 characters at most): a percentage, or the phase when it says more."""
    if r.state == RUNNING and r.phase and not r.phase.startswith("training"):
        word = next((short for prefix, short in PHASES if r.phase.startswith(prefix)), r.phase.split()[0])
        return word if len(word) <= 5 else "busy"  # a phase named later: its own word, or "busy" (never a code)
    return "stop" if r.stopped_early and r.state == FINISHED else f"{r.progress:4.0%}"


def row_text(r: RunRow) -> str:
    """Everything a filter matches against."""
    return " ".join([r.run_id, state_word(r), r.what, r.point, who(r), f"seed{r.seed}", r.device, r.phase, *r.studies,
                     r.reason or "", "synthetic" if r.synthetic else ""]).lower()


def arrange(rows: list[RunRow], query: str = "", sort: str = "created", by_study: bool = False,
            reverse: bool = False) -> list[RunRow]:
    """The rows a list shows: those matching every word of ``query``, sorted, optionally grouped by study."""
    words = query.lower().split()
    shown = [r for r in rows if all(w in row_text(r) for w in words)]

    def number(value):  # missing values last, whatever the direction
        return (value is None, -(value or 0))

    keys = {"created": lambda r: r.order, "state": lambda r: (state_word(r), r.order),
            "what": lambda r: (r.what, r.order), "student": lambda r: (r.student, r.order),
            "seed": lambda r: (r.seed if r.seed is not None else -1, r.order),
            "study": lambda r: (study_of(r) == NO_STUDY, study_of(r), r.order), "device": lambda r: (r.device, r.order),
            "best val": lambda r: number(r.best_val), "test acc": lambda r: number(r.test_accuracy),
            "gain": lambda r: number(r.gain)}
    shown.sort(key=keys[sort], reverse=reverse)
    if by_study:
        shown.sort(key=lambda r: (study_of(r) == NO_STUDY, study_of(r)))  # stable: the chosen order holds within a study
    return shown


def groups(rows: list[RunRow]) -> list[tuple[str, list[RunRow]]]:
    """Consecutive rows of one study, with the study's name: the list's group headers."""
    out: list[tuple[str, list[RunRow]]] = []
    for r in rows:
        if out and out[-1][0] == study_of(r):
            out[-1][1].append(r)
        else:
            out.append((study_of(r), [r]))
    return out


@dataclass
class Curves:
    """Per-epoch curves of one run, plus its step losses."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    checks: list[tuple[float, float]] = field(default_factory=list)  # defective teachers: (epoch, val accuracy)
    train_is_ce: bool = True  # False for a run recorded before train "ce" was (its train loss is then the objective)

    def step_epochs(self) -> list[float]:
        """Step positions in epochs (x axis shared with the epoch curves)."""
        per = self.steps_per_epoch or 1
        return [s / per for s in self.steps]

    def add_epoch(self, e: ev.Epoch) -> None:
        n = e.epoch
        if n in self.epochs:  # a resumed run may log an epoch twice: the last one wins
            i = self.epochs.index(n)
            for lst in (self.epochs, self.train_loss, self.val_loss, self.train_acc, self.val_acc):
                del lst[i:]
        self.epochs.append(n)
        self.train_loss.append(e.train.get("ce", e.train["loss"]))  # cross-entropy on both sides: they compare
        self.train_is_ce = self.train_is_ce and "ce" in e.train
        self.val_loss.append(e.val["loss"])
        self.train_acc.append(e.train["accuracy"])
        self.val_acc.append(e.val["accuracy"])


class RunView:
    """Everything the monitor panes need about one run, refreshed incrementally."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.offset = 0
        self.curves = Curves()
        self.class_names: list[str] = []
        self.confusion: list[list[int]] | None = None
        self.confusion_label = ""
        self.metrics: dict | None = None
        try:
            self.spec = store.load_spec(run_id)
        except Exception:  # noqa: BLE001 - a damaged run shows what it can
            self.spec = None
        self.model = self.spec.model if self.spec else "?"
        self.teacher_ids: list[str] = [t.run_id for t in self.spec.teachers] if self.spec else []

        base = baseline_of(self.spec) if self.spec else None
        self.baseline_id = base.run_id if base is not None and base.run_id not in self.teacher_ids else None
        self.warnings: list[str] = []
        self.version = 0  # bumped when anything visible changed

    def poll(self) -> bool:
        """Read what was appended since the last poll; True if something changed."""
        lines, self.offset = self.store.read_events(self.run_id, self.offset)
        changed = bool(lines)
        for e in ev.parse_all(lines):
            if isinstance(e, ev.Start):
                self.class_names = e.classes or self.class_names
                self.curves.steps_per_epoch = e.steps_per_epoch
            elif isinstance(e, ev.Epoch):
                self.curves.add_epoch(e)
                self.confusion = e.val_confusion
                self.confusion_label = f"val, epoch {e.epoch}"
            elif isinstance(e, ev.Step):
                value = self._step_ce(e)
                if value is not None:
                    self.curves.steps.append(e.global_step)
                    self.curves.step_loss.append(value)
            elif isinstance(e, ev.Warning):
                self.warnings.append(e.message)
            elif isinstance(e, (ev.DefectCheck, ev.Defect)) and self.curves.steps_per_epoch:
                self.curves.checks.append((e.global_step / self.curves.steps_per_epoch, e.val_accuracy))
        if self.metrics is None:
            metrics = self.store.read_metrics(self.run_id)
            if metrics is not None:
                self.metrics = metrics
                self.class_names = metrics["class_names"]
                self.confusion = metrics["test"]["confusion"]
                self.confusion_label = "test, best checkpoint"
                changed = True
        if changed:
            self.version += 1
        return changed

    def _step_ce(self, e: ev.Step) -> float | None:
        """A step's plain cross-entropy: the loss of a cross-entropy run; for a KD run its CE term unweighted
        (the objective itself does not compare with val's loss), none when α = 1 leaves no CE term."""
        kd = self.spec.kd if self.spec is not None else None
        if kd is None:
            return e.loss
        ce = e.terms.get("ce")
        return ce / (1.0 - kd.alpha) if ce is not None and kd.alpha < 1.0 else None

    def report(self) -> dict[str, dict] | None:
        """The classification report: final (test) when finished, else derived from the val confusion."""
        if self.metrics:
            return self.metrics["test"]["report"]
        if not self.confusion or not self.class_names:
            return None
        return report_from_confusion(self.confusion, self.class_names)


def report_from_confusion(cm: list[list[int]], names: list[str]) -> dict[str, dict]:
    out = {}
    for i, name in enumerate(names):
        tp = cm[i][i]
        support = sum(cm[i])
        predicted = sum(row[i] for row in cm)
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[name] = {"precision": p, "recall": r, "f1": f, "support": support}
    return out


def load_rows(store: RunStore) -> tuple[list[RunRecord], list[RunRow]]:
    records = collect(store)
    return records, run_rows(store, every=records)
