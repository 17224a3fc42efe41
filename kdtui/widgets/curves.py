"""Live loss and accuracy curves (textual-plotext), redrawn at most a few times a second.

The student's train and val curves, overlaid with its teachers' val accuracy, its baseline's, and any run
pinned for comparison. Axis ticks are fixed and honest: accuracy at 0, .25, .5, .75 and 1; loss at five
round values spanning the data."""
from __future__ import annotations

import math
import time

from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from kdengine.api import Curves

MIN_REDRAW_S = 0.4  # live updates of one run: at most this often
SETTLE_S = 0.15  # another run selected: draw once the keys have settled for this long
ACC_TICKS = [0.0, 0.25, 0.5, 0.75, 1.0]


def acc_label(v: float) -> str:
    return {0.0: "0", 1.0: "1"}.get(v, f"{v:.2f}".lstrip("0"))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while (not ticks or ticks[-1] < hi - 1e-12) and len(ticks) < 12:  # until the last tick covers hi
        ticks.append(round(t, 10))
        t += step
    return ticks


def tick_label(v: float) -> str:
    return f"{v:.3g}"


def fitting_ticks(ticks: list[float], rows: int) -> list[float]:
    """The ticks a plot of ``rows`` canvas rows can label honestly: at least two rows apart, so that no label
    is dropped or lands on the wrong row; always the ends, and the middle when it fits."""
    if len(ticks) <= 2 or rows >= 2 * (len(ticks) - 1) + 1:
        return ticks
    if rows >= 5 and len(ticks) % 2 == 1:
        return [ticks[0], ticks[len(ticks) // 2], ticks[-1]]
    return [ticks[0], ticks[-1]]


# One colour per meaning, in both plots: plotext's own sequence gave the loss plot's extra "step" series the first
# colour, so train and val (and each teacher) wore other colours on the left than on the right
COLOURS = {"step": "gray", "train": "blue+", "val": "green+", "checks": "red+"}
OVERLAY_COLOURS = ("magenta+", "cyan+", "yellow+", "red", "blue", "green")


class TickedPlot(PlotextPlot):
    """A plot whose y ticks are chosen when it is drawn, for the height it really has."""

    y_ticks: list[float] = []
    y_format = staticmethod(tick_label)

    def render(self):
        if self.y_ticks:
            rows = max(1, self.size.height - 6)  # less the title, the frame, the x axis and its label
            ticks = fitting_ticks(self.y_ticks, rows)
            self.plt.yticks(ticks, [self.y_format(t) for t in ticks])
        return super().render()


class CurvesPane(Horizontal):
    """Loss on the left, accuracy on the right."""

    DEFAULT_CSS = """
    CurvesPane { height: 1fr; }
    CurvesPane PlotextPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._pending: tuple | None = None
        self._last = 0.0
        self._asked = 0.0
        self._shown_title: str | None = None

    def compose(self):
        yield TickedPlot(id="loss-plot")
        acc = TickedPlot(id="acc-plot")
        acc.y_ticks = ACC_TICKS
        acc.y_format = acc_label
        yield acc

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda theme: self._apply_theme(theme.name))
        self._apply_theme(self.app.theme)
        self.set_interval(0.05, self._flush)
        self.show(None, [])

    def _apply_theme(self, name: str) -> None:
        # ANSI themes have no colours for plotext to copy: use the terminal's own ("clear").
        for plot in self.query(TickedPlot):
            plot.theme = "clear" if "ansi" in name else "auto"

    def show(self, student: Curves | None, overlays: list[tuple[str, Curves]], title: str = "", key: str = "") -> None:
        """Queue a redraw. Drawing two plots takes tens of milliseconds, so it never happens inside a key press:
        live updates are coalesced into one draw per MIN_REDRAW_S, and a newly selected run is drawn once the
        keys have settled for SETTLE_S (scrolling through a hundred runs stays instant).

        ``overlays``: (label, curves) drawn as val accuracy (and val loss) beside the run's own."""
        self._pending = (student, overlays, title, key or title)
        self._asked = time.monotonic()

    def _flush(self) -> None:
        if self._pending is None:
            return
        now = time.monotonic()
        new_run = self._pending[3] != self._shown_title
        if new_run and now - self._asked < SETTLE_S:
            return
        if not new_run and now - self._last < MIN_REDRAW_S:
            return
        student, overlays, title, self._shown_title = self._pending
        self._pending = None
        self._last = now
        loss = self.query_one("#loss-plot", TickedPlot)
        acc = self.query_one("#acc-plot", TickedPlot)
        for plot in (loss, acc):
            plot.plt.clear_data()
            plot.plt.clear_figure()
        loss.plt.title("loss" + (f" · {title}" if title else ""))
        acc.plt.title("accuracy")
        acc.plt.ylim(0, 1)
        if student is None or not (student.epochs or student.steps or student.checks):
            loss.plt.title("loss · no data yet")
        else:
            losses = []
            if student.steps and len(student.steps) > 1:
                loss.plt.plot(student.step_epochs(), student.step_loss, label="step ce", marker="dot",
                              color=COLOURS["step"])
                losses += student.step_loss
            if student.epochs:
                loss.plt.plot(student.epochs, student.train_loss, label="train ce" if student.train_is_ce else "train loss",
                              marker="braille", color=COLOURS["train"])
                loss.plt.plot(student.epochs, student.val_loss, label="val", marker="braille", color=COLOURS["val"])
                acc.plt.plot(student.epochs, student.train_acc, label="train", marker="braille", color=COLOURS["train"])
                acc.plt.plot(student.epochs, student.val_acc, label="val", marker="braille", color=COLOURS["val"])
                losses += student.train_loss + student.val_loss
            if student.checks:  # a defective teacher: its val accuracy at each check, up to the stop
                xs, ys = zip(*student.checks)
                acc.plt.scatter(list(xs), list(ys), label="checks", marker="x", color=COLOURS["checks"])
            for i, (name, curves) in enumerate(overlays):
                if curves.epochs:
                    colour = OVERLAY_COLOURS[i % len(OVERLAY_COLOURS)]
                    acc.plt.plot(curves.epochs, curves.val_acc, label=name[:14], marker="dot", color=colour)
                    loss.plt.plot(curves.epochs, curves.val_loss, label=name[:14], marker="dot", color=colour)
                    losses += curves.val_loss
            finite = [v for v in losses if math.isfinite(v)]
            loss.y_ticks = nice_ticks(min(finite), max(finite)) if finite else []
            if loss.y_ticks:
                loss.plt.ylim(loss.y_ticks[0], loss.y_ticks[-1])
            loss.plt.xlabel("epoch")
            acc.plt.xlabel("epoch")
        loss.refresh()
        acc.refresh()
