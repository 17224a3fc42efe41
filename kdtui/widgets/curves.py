"""Live loss and accuracy curves (textual-plotext), redrawn at most a few times a second.

The student's train and val curves, overlaid with its teachers' val accuracy, its baseline's, and any run
pinned for comparison. Axis ticks are fixed and honest: accuracy at 0, .25, .5, .75 and 1; loss at five
round values spanning the data.

A short pane (80x24) has room for a few canvas rows only, and plotext's legend, one row per series in the plot's
corner, covered most of them. There the legend moves into one coloured key line above the plots, in place of
the plots' own title rows, so the canvas keeps every row it had."""
from __future__ import annotations

import math
import time

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
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
# below this many canvas rows per legend row (and fewer than COMPACT_ROWS rows), the legend leaves the canvas
COMPACT_ROWS = 12
MARKS = {"braille": "━", "dot": "•", "x": "x"}


def rich_colour(colour: str) -> str:
    """plotext's colour name as Rich spells it ("blue+" is the bright blue)."""
    return "grey50" if colour == "gray" else (f"bright_{colour[:-1]}" if colour.endswith("+") else colour)


def compact(rows: int, entries: int) -> bool:
    """Whether a plot of ``rows`` canvas rows keeps its legend off the canvas: its ``entries`` rows would cover
    more than a third of it."""
    return rows < COMPACT_ROWS and entries * 3 > rows


def key_line(title: str, entries: list[tuple[str, str, str]], width: int = 10_000) -> Text:
    """The short pane's title and legend on one line of ``width`` cells: each (label, marker, colour) in the
    series' own colour. Where it does not fit, the plots' names go first, then the title is shortened: the key is
    what the line is for."""
    key = Text()
    for label, marker, colour in entries:
        key.append("  ")
        key.append(MARKS.get(marker, "•") + " " + label, style=rich_colour(colour))
    room = width - key.cell_len
    head = next((h for h in ("loss · accuracy" + (f" · {title}" if title else ""), title) if len(h) <= room),
                title[:max(0, room - 1)] + "…" if room > 1 else "")
    return Text(head, style="bold") + key


class TickedPlot(PlotextPlot):
    """A plot whose y ticks are chosen when it is drawn, for the height it really has."""

    y_ticks: list[float] = []
    y_format = staticmethod(tick_label)
    titled = True  # a title row above the frame (not in a short pane: the key line above the plots says it)

    def render(self):
        if self.y_ticks:
            # less the title, the frame, the x axis and its label
            rows = max(1, self.size.height - (6 if self.titled else 5))
            ticks = fitting_ticks(self.y_ticks, rows)
            self.plt.yticks(ticks, [self.y_format(t) for t in ticks])
        return super().render()


class CurvesPane(Vertical):
    """Loss on the left, accuracy on the right; in a short pane, their key on one line above them."""

    DEFAULT_CSS = """
    CurvesPane { height: 1fr; }
    CurvesPane #curves-key { height: 1; display: none; }
    CurvesPane #curves-plots { height: 1fr; }
    CurvesPane PlotextPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._pending: tuple | None = None
        self._last = 0.0
        self._asked = 0.0
        self._shown_title: str | None = None
        self._drawn: tuple | None = None  # the last data drawn, drawn again when the pane's size changes
        self._laid_out = None

    def compose(self):
        yield Static(id="curves-key")
        with Horizontal(id="curves-plots"):
            yield TickedPlot(id="loss-plot")
            acc = TickedPlot(id="acc-plot")
            acc.y_ticks = ACC_TICKS
            acc.y_format = acc_label
            yield acc

    def on_resize(self) -> None:
        """Drawn again at once for the new size: the legend's place depends on the height, the key line's fit on
        the width."""
        if self.size != self._laid_out and self._drawn is not None and self._pending is None:
            self._pending, self._shown_title = self._drawn, self._drawn[3]  # redrawn at once, not settled
        self._laid_out = self.size

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
        self._drawn = self._pending
        student, overlays, title, self._shown_title = self._pending
        self._pending = None
        self._last = now
        loss = self.query_one("#loss-plot", TickedPlot)
        acc = self.query_one("#acc-plot", TickedPlot)
        key = self.query_one("#curves-key", Static)
        for plot in (loss, acc):
            plot.plt.clear_data()
            plot.plt.clear_figure()
        loss_series, acc_series = [], []  # (xs, ys, label, marker, colour, scatter)
        losses: list[float] = []
        has_data = student is not None and bool(student.epochs or student.steps or student.checks)
        if has_data:
            if student.steps and len(student.steps) > 1:
                loss_series.append((student.step_epochs(), student.step_loss, "step ce", "dot", COLOURS["step"], False))
                losses += student.step_loss
            if student.epochs:
                train = "train ce" if student.train_is_ce else "train loss"
                loss_series += [(student.epochs, student.train_loss, train, "braille", COLOURS["train"], False),
                                (student.epochs, student.val_loss, "val", "braille", COLOURS["val"], False)]
                acc_series += [(student.epochs, student.train_acc, "train", "braille", COLOURS["train"], False),
                               (student.epochs, student.val_acc, "val", "braille", COLOURS["val"], False)]
                losses += student.train_loss + student.val_loss
            if student.checks:  # a defective teacher: its val accuracy at each check, up to the stop
                xs, ys = zip(*student.checks)
                acc_series.append((list(xs), list(ys), "checks", "x", COLOURS["checks"], True))
            for i, (name, curves) in enumerate(overlays):
                if curves.epochs:
                    colour = OVERLAY_COLOURS[i % len(OVERLAY_COLOURS)]
                    acc_series.append((curves.epochs, curves.val_acc, name[:14], "dot", colour, False))
                    loss_series.append((curves.epochs, curves.val_loss, name[:14], "dot", colour, False))
                    losses += curves.val_loss
        rows = max(1, loss.size.height - (6 if loss.titled else 5))  # the canvas, whichever way it is drawn now
        short = has_data and compact(rows, max(len(loss_series), len(acc_series)))
        if short:  # one key for both plots: each label once, in its colour
            seen: dict[str, tuple[str, str, str]] = {}  # one entry per colour: train ce (left) is train (right)
            for _, _, label, marker, colour, _ in acc_series + loss_series:  # "train", not "train loss"
                seen.setdefault(colour, (label, marker, colour))
            key.update(key_line(title, list(seen.values()), max(20, self.size.width)))
        else:
            loss.plt.title("loss" + (f" · {title}" if title else "") if has_data else "loss · no data yet")
            acc.plt.title("accuracy")
        key.display = short
        loss.titled = acc.titled = not short
        acc.plt.ylim(0, 1)
        for plot, series in ((loss, loss_series), (acc, acc_series)):
            for xs, ys, label, marker, colour, scatter in series:
                draw = plot.plt.scatter if scatter else plot.plt.plot
                draw(xs, ys, label=None if short else label, marker=marker, color=colour)
        if has_data:
            finite = [v for v in losses if math.isfinite(v)]
            loss.y_ticks = nice_ticks(min(finite), max(finite)) if finite else []
            if loss.y_ticks:
                loss.plt.ylim(loss.y_ticks[0], loss.y_ticks[-1])
            loss.plt.xlabel("epoch")
            acc.plt.xlabel("epoch")
        loss.refresh()
        acc.refresh()
