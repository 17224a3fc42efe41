"""Headless progress: a rich progress bar with ETA on a terminal, plain lines in logs."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, title: str, enabled: bool = True, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self.enabled = enabled
        self.rich = None
        self.task = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn, TimeRemainingColumn

            self.rich = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), console=Console(file=self.stream), transient=False)

    def start(self, total_steps: int, done: int = 0) -> None:
        if self.rich:
            self.rich.start()
            self.task = self.rich.add_task(self.title, total=total_steps, completed=done, info="")

    def step(self, done: int, info: str = "") -> None:
        if self.rich and self.task is not None:
            self.rich.update(self.task, completed=done, info=info)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.rich:
            self.rich.console.print(text, markup=False, highlight=False)
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.rich:
            self.rich.stop()
