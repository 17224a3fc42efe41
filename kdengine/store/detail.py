"""One run in full, read from the store (no torch): its spec, curves, confusion matrix, final metrics and the
warnings its log holds, as a typed record. Read again with the previous record, only what was appended to the
event log since is read (a monitor tails a live run every second).

The curves are ``store.curves``'s, the one reading of a run's log; a classification report is derived from the
latest val confusion matrix while a run trains, and is the final one (test) once it finished."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import KDError
from ..runspec import RunSpec
from . import events as ev
from .curves import Curves, curves
from .records import OfSpec
from .runstore import RunStore


@dataclass(frozen=True)
class RunDetail(OfSpec):
    run_id: str
    spec: RunSpec | None  # None when spec.json cannot be read (``damage`` says why)
    damage: str | None = None
    curves: Curves = field(default_factory=Curves)
    class_names: list[str] = field(default_factory=list)
    # the latest val confusion while it trains; test's once finished. A multi-label run's is one 2 x 2 (true x
    # predicted at 0.5) per finding: {finding: [[tn, fp], [fn, tp]]}
    confusion: list[list[int]] | dict[str, list[list[int]]] | None = None
    confusion_split: str | None = None  # "val" or "test"
    confusion_epoch: int | None = None  # the epoch of a val confusion (None: the best checkpoint's, on test)
    metrics: dict | None = None  # metrics.json, once it finished
    warnings: list[str] = field(default_factory=list)  # what the trainer warned of, in its log
    version: int = 0  # bumped each time something in it changed
    offset: int = field(default=0, repr=False)  # how far the event log was read
    events: tuple[ev.Event, ...] = field(default=(), repr=False)  # the log so far, typed

    def report(self, split: str = "test") -> dict[str, dict] | None:
        """The classification report: the final one of ``split`` once finished, else derived from the latest val
        confusion matrix."""
        if self.metrics:
            return self.metrics[split]["report"]
        if not self.confusion or not self.class_names:
            return None
        return report_from_confusion(self.confusion, self.class_names)


def report_from_confusion(cm: list[list[int]] | dict[str, list[list[int]]], names: list[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support per class (a multi-label run's: per finding, of its positive label)."""
    if isinstance(cm, dict):
        return {name: report_from_confusion(m, ["no", name])[name] for name, m in cm.items()}
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


def _usable_metrics(metrics) -> dict | None:
    """metrics.json as the panes read it; a damaged one (not an object, keys missing) reads as none yet."""
    ok = isinstance(metrics, dict) and isinstance(metrics.get("test"), dict) and "class_names" in metrics
    return metrics if ok else None


def read_detail(store: RunStore, run_id: str, since: RunDetail | None = None) -> RunDetail:
    """The run in full; with ``since`` (this run's previous record), only what was appended to its log since is
    read, and ``since`` itself comes back when nothing changed."""
    if since is None or since.run_id != run_id:
        try:
            spec, damage = store.load_spec(run_id), None
        except KDError as exc:  # a damaged run shows what it can
            spec, damage = None, str(exc)
        since = RunDetail(run_id, spec, damage)
    lines, offset = store.read_events(run_id, since.offset)
    metrics = since.metrics or _usable_metrics(store.read_metrics(run_id))  # written once: read until there
    if not lines and metrics is since.metrics and since.version:
        return since
    events = since.events + tuple(ev.parse_all(lines))
    alpha = since.spec.kd.alpha if since.spec is not None and since.spec.kd is not None else None
    epochs = ev.epochs(events)
    start = ev.start(events)
    detail = replace(since, curves=curves(list(events), alpha), class_names=start.classes if start else [],
                     confusion=epochs[-1].val_confusion if epochs else None, confusion_split="val" if epochs else None,
                     confusion_epoch=epochs[-1].epoch if epochs else None, metrics=metrics,
                     warnings=ev.warnings(events), version=since.version + 1, offset=offset, events=events)
    if metrics is not None:
        detail = replace(detail, class_names=metrics["class_names"], confusion=metrics["test"].get("confusion"),
                         confusion_split="test", confusion_epoch=None)
    return detail
