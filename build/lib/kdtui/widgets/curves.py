"""Live loss and accuracy curves (textual-plotext), redrawn at most a few times a second."""
from __future__ import annotations

import time

from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from ..store_view import Curves

MIN_REDRAW_S = 0.4


class CurvesPane(Horizontal):
    """Loss on the left, accuracy on the right; train and val, and the teacher's val accuracy."""

    DEFAULT_CSS = """
    CurvesPane { height: 1fr; }
    CurvesPane PlotextPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._pending: tuple | None = None
        self._last = 0.0

    def compose(self):
        yield PlotextPlot(id="loss-plot")
        yield PlotextPlot(id="acc-plot")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda theme: self._apply_theme(theme.name))
        self._apply_theme(self.app.theme)
        self.set_interval(MIN_REDRAW_S, self._flush)
        self.show(None, [])

    def _apply_theme(self, name: str) -> None:
        # ANSI themes have no colours for plotext to copy: use the terminal's own ("clear").
        for plot in self.query(PlotextPlot):
            plot.theme = "clear" if "ansi" in name else "auto"

    def show(self, student: Curves | None, teachers: list[tuple[str, Curves]], title: str = "") -> None:
        """Queue a redraw; bursts of updates are coalesced into one draw per MIN_REDRAW_S."""
        self._pending = (student, teachers, title)
        if time.monotonic() - self._last >= MIN_REDRAW_S:
            self._flush()

    def _flush(self) -> None:
        if self._pending is None:
            return
        student, teachers, title = self._pending
        self._pending = None
        self._last = time.monotonic()
        loss = self.query_one("#loss-plot", PlotextPlot)
        acc = self.query_one("#acc-plot", PlotextPlot)
        for plot in (loss, acc):
            plot.plt.clear_data()
            plot.plt.clear_figure()
        loss.plt.title("loss" + (f" · {title}" if title else ""))
        acc.plt.title("accuracy")
        if student is None or not (student.epochs or student.steps):
            loss.plt.title("loss · no data yet")
        else:
            if student.steps and len(student.steps) > 1:
                loss.plt.plot(student.step_epochs(), student.step_loss, label="step", marker="dot")
            if student.epochs:
                loss.plt.plot(student.epochs, student.train_loss, label="train", marker="braille")
                loss.plt.plot(student.epochs, student.val_loss, label="val", marker="braille")
                acc.plt.plot(student.epochs, student.train_acc, label="train", marker="braille")
                acc.plt.plot(student.epochs, student.val_acc, label="val", marker="braille")
            for name, curves in teachers:
                if curves.epochs:
                    acc.plt.plot(curves.epochs, curves.val_acc, label=f"T {name}"[:14], marker="dot")
            acc.plt.ylim(0, 1)
            loss.plt.xlabel("epoch")
            acc.plt.xlabel("epoch")
        loss.refresh()
        acc.refresh()
