"""Modal screens: help, a question, the worker dialog and the export folder."""
from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

# The app's own keys; each screen's come from its HELP (the table of screens, kdtui.screens)
APP_KEYS = [
    ("? F1", "anywhere", "this help"),
    ("ctrl+p", "anywhere", "command palette: every action"),
    ("q", "not typing", "quit (runs go on in the worker)"),
]
NOTE = ("Runs train in a detached `kdengine worker`: quitting the app or closing the SSH session "
        "does not stop them. Reopen kdtui to re-attach.")


def help_rows(entries) -> list[tuple[str, str, str]]:
    """The help's rows: the screen keys, the app's keys, then each screen's own (a key several screens share in
    the same sense is one row that names them all)."""
    keys = " ".join(e.key for e in entries)
    titles = " · ".join(e.title for e in entries)
    rows = [(keys, "not typing", f"{titles} (in a text field, esc first)"), *APP_KEYS]
    where: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        for key, what in getattr(e.screen, "HELP", ()):
            where.setdefault((key, what), []).append(e.title)
    return rows + [(key, ", ".join(titles), what) for (key, what), titles in where.items()]


def help_table(entries):
    table = Table(title="kdstudy · keys", box=None, header_style="bold", padding=(0, 1), caption=NOTE,
                  caption_justify="left")
    table.add_column("key", style="bold yellow", no_wrap=True)
    table.add_column("where", style="dim")
    table.add_column("what")
    for row in help_rows(entries):
        table.add_row(*row)
    return table


class HelpScreen(ModalScreen[None]):
    """The keys (of the app and of each screen in the table of screens); it scrolls (↑ ↓ pgup pgdn) where the
    terminal is shorter than the list."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, entries) -> None:
        super().__init__()
        self.entries = entries

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "keys · ↑ ↓ scroll · esc closes"
            yield Static(help_table(self.entries))

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()


class ConfirmScreen(ModalScreen[str | None]):
    """A question with one key per answer (no mouse needed): dismisses with the chosen answer, or None."""

    BINDINGS = [Binding("escape,n", "dismiss_none", "Cancel")]

    def __init__(self, question: str, details: str = "", answers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.question = question
        self.details = details
        self.answers = answers or {"y": "yes"}

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(self.question, id="confirm-question")
            if self.details:
                yield Static(self.details, id="confirm-details", classes="note")
            keys = " · ".join(f"{k}: {v}" for k, v in self.answers.items())
            yield Label(f"{keys} · esc or n: cancel", classes="note")

    def on_key(self, event) -> None:
        if event.key in self.answers:
            event.stop()
            self.dismiss(event.key)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class WorkerScreen(ModalScreen[tuple[str, str] | None]):
    """Start background workers: one key picks the device, one the runs per GPU, enter starts."""

    DEVICES = {"a": "auto", "c": "cpu", "g": "cuda"}
    PER_GPU = {"1": "1", "2": "2", "4": "4", "8": "8", "u": "auto"}
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "start", "Start", priority=True)]

    def __init__(self, gpus: int) -> None:
        super().__init__()
        self.gpus = gpus
        self.device = "auto"
        self.per_gpu = "1"

    def compose(self) -> ComposeResult:
        with Vertical(id="worker-box"):
            yield Label("Start a background worker" + (f" ({self.gpus} GPU(s) visible)" if self.gpus else
                                                        " (no GPU visible: it trains on the CPU)"))
            yield Static("", id="worker-choice")
            yield Label("device: a auto · c cpu · g cuda (GPU)", classes="note")
            yield Label("runs per GPU: 1 2 4 8 · u auto (fitted to the cores and memory)", classes="note")
            yield Label("enter: start · escape: cancel", classes="note")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        self.query_one("#worker-choice", Static).update(f"device [b]{self.device}[/b] · runs per GPU [b]{self.per_gpu}[/b]")

    def on_key(self, event) -> None:
        if event.key in self.DEVICES:
            self.device = self.DEVICES[event.key]
        elif event.key in self.PER_GPU:
            self.per_gpu = self.PER_GPU[event.key]
        else:
            return
        event.stop()
        self._show()

    def action_start(self) -> None:
        self.dismiss((self.device, self.per_gpu))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: str, label: str = "Export the tables (CSV and Markdown) into the folder:") -> None:
        super().__init__()
        self.default = default
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label(self.label)
            yield Input(self.default, id="export-path")
            yield Label("enter: export · escape: cancel", classes="note")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
