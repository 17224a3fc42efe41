"""The trainer's parts: the end-of-epoch decision (best, defect, patience) without a model, the optimisers and
schedules, gradient clipping, and early stopping end to end."""
from __future__ import annotations

import math

import pytest
import torch

from kdengine.data.config import DataConfig
from kdengine.paths import runs_dir
from kdengine.runspec import RunSpec, TrainConfig
from kdengine.store import RunStore
from kdengine.training.trainer import TrainState, Trainer, decide
from tests.engine_helpers import train


# -- the decision ------------------------------------------------------------------------------------------------
def run_decisions(accs, defect_acc=None, patience=0):
    """Feed val accuracies through decide/apply as the trainer does; return (state, epoch it stopped at, saves)."""
    state, saves = TrainState(), []
    for epoch, acc in enumerate(accs, start=1):
        d = decide(state, acc, defect_acc, patience)
        if d.defect:
            state.defect = {"val_accuracy": acc}
            state.best_acc, state.best_epoch = acc, epoch
        if d.improved or d.defect:
            saves.append(epoch)
        state.apply(d, epoch, acc)
        if d.stop:
            return state, epoch, saves
    return state, None, saves


def test_patience_stops_after_n_epochs_without_improvement():
    state, stopped, saves = run_decisions([0.5, 0.6, 0.55, 0.58, 0.7], patience=2)
    assert stopped == 4 and state.best_epoch == 2 and state.best_acc == 0.6 and saves == [1, 2]
    assert state.stopped_early and state.bad_epochs == 2


def test_patience_resets_on_improvement_and_zero_means_off():
    _, stopped, saves = run_decisions([0.5, 0.4, 0.6, 0.5, 0.7], patience=2)
    assert stopped is None and saves == [1, 3, 5]
    _, stopped, _ = run_decisions([0.5] + [0.1] * 20, patience=0)
    assert stopped is None


def test_a_tie_is_not_an_improvement():
    state, stopped, saves = run_decisions([0.5, 0.5, 0.5], patience=2)
    assert saves == [1] and stopped == 3


def test_defect_threshold_stops_and_keeps_those_weights():
    state, stopped, saves = run_decisions([0.2, 0.35, 0.52, 0.9], defect_acc=0.5)
    assert stopped == 3 and saves == [1, 2, 3] and state.best_acc == 0.52 and state.defect


def test_state_round_trips_through_a_checkpoint_dict():
    state, _, _ = run_decisions([0.5, 0.4], patience=3)
    assert TrainState.from_dict(state.to_dict()) == state
    # a version-1 last.pt holds these keys only: it still resumes
    old = {"epoch": 2, "global_step": 8, "best_acc": 0.5, "best_epoch": 1, "bad_epochs": 1, "defect": None}
    assert TrainState.from_dict(old).stopped_early is False


# -- optimisers, schedules, clipping -----------------------------------------------------------------------------
def build(**train):
    from kdengine.training.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt, sched = build_optimizer(model.parameters(), TrainConfig(**train), torch.device("cpu"))
    return model, opt, sched


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("sgd", torch.optim.SGD)])
def test_optimisers_get_their_settings(name, cls):
    _, opt, _ = build(optimizer=name, lr=0.05, weight_decay=0.01, momentum=0.8)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01 and group["fused"] is True
    if name == "sgd":
        assert group["momentum"] == 0.8 and group["nesterov"] is False


def test_an_unknown_optimiser_or_schedule_is_an_error_not_a_fallback():
    from types import SimpleNamespace

    from kdengine.errors import UsageError
    from kdengine.training.optim import build_optimizer

    base = TrainConfig()
    for bad in ({"optimizer": "adagrad"}, {"schedule": "linear"}):
        cfg = SimpleNamespace(**{**{k: getattr(base, k) for k in base.__dataclass_fields__}, **bad})
        with pytest.raises(UsageError, match="unknown"):
            build_optimizer(torch.nn.Linear(2, 2).parameters(), cfg, torch.device("cpu"))


def lrs(epochs, **train):
    _, opt, sched = build(epochs=epochs, **train)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_and_step_schedules_follow_their_formulas():
    cos = lrs(4, lr=0.1, schedule="cosine")
    assert cos == pytest.approx([0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])
    step = lrs(6, lr=0.1, schedule="step", step_size=2, gamma=0.5)
    assert step == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert lrs(3, lr=0.1) == [0.1, 0.1, 0.1]


class _Feed:
    """A feed whose raw batch is already the images and labels."""

    def view(self, raw):
        return raw["x"], raw["y"]


def one_step(grad_clip: float) -> float:
    """The size of one SGD (lr 1) update of a linear model through the step object."""
    from kdengine.training.losses import distiller_for
    from kdengine.training.methods import Outputs
    from kdengine.training.step import TrainStep

    spec = RunSpec(model="test_resnet", data=DataConfig(), train=TrainConfig(), regime="normal")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    step = TrainStep(_Feed(), lambda x: Outputs(model(x)), model, [], distiller_for(spec, 3), opt, grad_clip,
                     lambda: __import__("contextlib").nullcontext(), 3, 16, 16, torch.device("cpu"))
    x, y = torch.randn(16, 4) * 50, torch.randint(0, 3, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    out = step({"x": x, "y": y, "pos": torch.arange(16)})
    assert torch.isfinite(out.loss) and int(step.confusion.sum()) == 16  # the epoch's sums follow the step
    return torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before))).item()


def test_gradient_clipping_bounds_the_update():
    free, clipped = one_step(0.0), one_step(0.1)
    assert free > 0.5 and clipped == pytest.approx(0.1, rel=1e-4)  # SGD, lr 1: the update is the clipped gradient


# -- early stopping end to end --------------------------------------------------------------------------------------
def test_early_stopping_end_to_end(capsys, monkeypatch):
    """Scripted val accuracies (0.5, 0.6, 0.4, 0.3, ...) with patience 2: training ends after epoch 4,
    the best checkpoint is epoch 2's, and resume state says it stopped."""
    scripted = iter([0.5, 0.6, 0.4, 0.3, 0.9, 0.9])
    real = Trainer.evaluate

    def evaluate(self, split, final=False, thresholds=None):
        metrics, probs = real(self, split, final, thresholds)
        if split == "val" and not getattr(self, "_finishing", False):
            metrics = {**metrics, "accuracy": next(scripted)}
        return metrics, probs

    real_finish = Trainer._finish

    def finish(self, state, t0):
        self._finishing = True
        return real_finish(self, state, t0)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    monkeypatch.setattr(Trainer, "_finish", finish)
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "6", "--patience", "2")
    assert m["epochs_run"] == 4 and m["best_epoch"] == 2
    events = RunStore(runs_dir()).read_events(m["run_id"])[0]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4]
    assert [e["epoch"] for e in events if e["type"] == "early_stop"] == [4]
    assert [e["best_epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 2, 2]


def test_epoch_events_carry_the_rate_each_epoch_trained_with(capsys):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "3", "--optimizer", "sgd",
                 "--lr", "0.04", "--schedule", "step", "--step-size", "1", "--gamma", "0.5")
    events = RunStore(runs_dir()).read_events(m["run_id"])[0]
    assert [e["lr"] for e in events if e["type"] == "epoch"] == pytest.approx([0.04, 0.02, 0.01])


def test_a_bar_that_ends_early_ends_full_and_says_why():
    """On a terminal the bar of a run stopped early shows the steps taken as all of them and no ETA left."""
    import io

    from kdengine.training.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = Progress("defective resnet10t", stream=stream)
    bar.start(184)
    bar.step(46, "ep 1/4 loss 1.234")
    bar.finish(46, "ep 1/4 stopped at the defect threshold")
    bar.close()
    last = stream.getvalue().rsplit("\r", 1)[-1].rsplit("\x1b[2K", 1)[-1]
    assert "46/46" in last and "stopped at the defect threshold" in last and "184" not in last
    assert "ETA" not in last  # nothing left: an ended bar says no ETA (issue 38)
