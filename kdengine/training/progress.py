"""Headless progress: a rich progress bar with ETA on a terminal, plain lines in logs.

The bar fits 80 columns (the title is shortened), and redraws at most twice a second: a bar that
redraws on every step costs training throughput on a fast terminal."""
from __future__ import annotations

import sys
import time

REFRESH_S = 0.5
TITLE_CHARS = 26


def short(title: str, width: int = TITLE_CHARS) -> str:
    return title if len(title) <= width else title[: width - 1] + "…"


def _eta_column():
    """"ETA 0:01:23" while the speed is known and steps remain; nothing otherwise (rich's own column says
    "-:--:--" until two updates have come, all a resumed run's short last stretch showed, and keeps an ETA on a
    bar that has ended)."""
    from rich.progress import ProgressColumn  # rich: only on a terminal
    from rich.text import Text

    class Eta(ProgressColumn):
        max_refresh = REFRESH_S

        def render(self, task) -> Text:
            left = task.time_remaining
            if task.finished or left is None:
                return Text("")
            minutes, seconds = divmod(int(left), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"ETA {hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    return Eta()


class Progress:
    def __init__(self, title: str, enabled: bool = True, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self.enabled = enabled
        self.rich = None
        self.task = None
        self._last = 0.0
        self._latest: tuple[int, str] | None = None  # the last step told, drawn or not (throttled)
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console  # rich: only on a terminal
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self.rich = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                                     MofNCompleteColumn(), TextColumn("{task.fields[info]}"), _eta_column(),
                                     console=Console(file=self.stream), transient=False,
                                     refresh_per_second=1 / REFRESH_S, expand=False)

    def start(self, total_steps: int, done: int = 0) -> None:
        if self.rich:
            self.rich.start()
            self.task = self.rich.add_task(short(self.title), total=total_steps, completed=done, info="")

    def step(self, done: int, info: str = "") -> None:
        if self.rich and self.task is not None:
            self._latest = (done, info)
            now = time.monotonic()
            if now - self._last >= REFRESH_S:  # rich redraws on its own clock; updates need not be faster
                self.flush()

    def flush(self) -> None:
        """Draw the last step told now (an epoch's end: the bar stands at its steps, never a step or two short
        with an ETA, as throttling left it)."""
        if self.rich and self.task is not None and self._latest is not None:
            self._last = time.monotonic()
            done, info = self._latest
            self.rich.update(self.task, completed=done, info=info)
            self.rich.refresh()

    def finish(self, done: int, info: str) -> None:
        """Training ended before its planned steps (a defective teacher at its threshold, early stopping): the bar
        ends full at the steps taken and says why, instead of freezing mid-way with an ETA for steps never run."""
        if self.rich and self.task is not None:
            self._latest = None  # drawn here, for good: no step told before may draw over it
            self.rich.update(self.task, total=max(done, 1), completed=max(done, 1), info=info)
            self.rich.refresh()

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.rich:
            self.rich.console.print(text, markup=False, highlight=False)
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def close(self, clear: bool = False) -> None:
        """Stop the bar; ``clear`` (a run interrupted or failed) takes it off the screen, so that the message
        saying why is the last line, and the bar is not drawn again beside it."""
        if self.rich:
            if clear:
                self.rich.live.transient = True
            else:
                self.flush()
            self.rich.stop()
            self.rich = None
