"""A run's curves, read from its event log (no torch): per epoch its train and val loss and accuracy, its step
losses, and a defective teacher's checks. The one reading of them, for kdtui's curves, ``runs show`` and the
figures and the report (``reports/figures``).

After a resume an epoch may be logged twice: the last one wins. The train loss is the cross-entropy where every
epoch recorded it (``events.train_loss_key``): a KD run minimises CE and KD terms weighted, and only its CE compares
with val's loss."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import events as ev


@dataclass(frozen=True)
class Curves:
    """Per-epoch curves of one run, plus its step losses and a defective teacher's checks."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)  # a step's plain cross-entropy (``step_ce``)
    steps_per_epoch: int = 0
    checks: list[tuple[float, float]] = field(default_factory=list)  # defective teachers: (epoch, val accuracy)
    train_is_ce: bool = True  # False for a run recorded before train "ce" was (its train loss is then the objective)

    def step_epochs(self) -> list[float]:
        """Step positions in epochs (the x axis the epoch curves share)."""
        per = self.steps_per_epoch or 1
        return [s / per for s in self.steps]


def epoch_events(events: list[ev.Event]) -> dict[int, ev.Epoch]:
    """Epoch -> its event (after a resume the last one wins)."""
    return {e.epoch: e for e in ev.epochs(events)}


def defect_checks(events: list[ev.Event]) -> list[tuple[float, float]]:
    """A defective teacher's val accuracy at each check, against the epoch (fractional)."""
    start = ev.start(events)
    per = start.steps_per_epoch if start else 0
    if not per:
        return []
    return [(e.global_step / per, e.val_accuracy) for e in events if isinstance(e, (ev.DefectCheck, ev.Defect))]


def step_ce(step: ev.Step, alpha: float | None) -> float | None:
    """A step's plain cross-entropy: the loss of a cross-entropy run (``alpha`` None); for a KD run its CE term
    unweighted (the objective itself does not compare with val's loss), none when α = 1 leaves no CE term."""
    if alpha is None:
        return step.loss
    ce = step.terms.get("ce")
    return ce / (1.0 - alpha) if ce is not None and alpha < 1.0 else None


def curves(events: list[ev.Event], alpha: float | None = None) -> Curves:
    """The curves of a run's log; ``alpha``: its KD weight (None for a cross-entropy run), for its step losses."""
    epochs = ev.epochs(events)
    key = ev.train_loss_key(epochs)
    start = ev.start(events)
    steps = [(s.global_step, value) for s in events if isinstance(s, ev.Step)
             if (value := step_ce(s, alpha)) is not None]
    return Curves(epochs=[e.epoch for e in epochs], train_loss=[e.train[key] for e in epochs],
                  val_loss=[e.val["loss"] for e in epochs], train_acc=[e.train["accuracy"] for e in epochs],
                  val_acc=[e.val["accuracy"] for e in epochs], steps=[s for s, _ in steps],
                  step_loss=[v for _, v in steps], steps_per_epoch=start.steps_per_epoch if start else 0,
                  checks=defect_checks(events), train_is_ce=not epochs or key == "ce")
