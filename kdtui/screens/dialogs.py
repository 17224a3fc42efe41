"""Modal screens: help, and the CSV export path."""
from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

KEYS = [
    ("1 2 3 4", "not typing", "Runs · Launch · Results · Workers (in a text field, esc first)"),
    ("? F1", "anywhere", "this help"),
    ("ctrl+p", "anywhere", "command palette: every action"),
    ("q", "not typing", "quit (runs go on in the worker)"),
    ("↑ ↓ home end", "Runs", "select a run (pgup pgdn: a page)"),
    ("/ esc", "Runs", "filter by any text (state, strategy, model, study, device) · clear it"),
    ("o O", "Runs", "sort by the next column · reverse"),
    ("b", "Runs", "group by study (a header per study)"),
    ("A", "Runs", "stop, retry, delete or archive every run shown (asks)"),
    ("g", "Runs", "jump to the next running run"),
    ("z", "Runs", "the list alone (zoom) · back"),
    ("c m p i", "Runs", "curves · confusion matrix · report (p again: next split) · details"),
    ("x", "Runs", "pin the run: its curves overlay every other run's (x again: unpin)"),
    ("l L", "Runs", "where it looks (kdengine explain): l again / L next / previous image"),
    ("s r d", "Runs", "stop (asks) · retry or resume · delete or archive (asks)"),
    ("w", "Runs, Workers", "start a background worker (choose its device)"),
    ("tab", "Launch", "into the form, next field"),
    ("esc", "Launch", "leave the form (then 1 2 3 4 q work)"),
    ("F2 F3", "Launch", "CPU-quick preset · thesis preset"),
    ("F5", "Launch", "launch the run(s)"),
    ("F6", "Launch", "run the study file named (queued; workers start)"),
    ("[ ]", "Results", "previous · next table"),
    ("← →", "Results", "scroll a wide table"),
    ("v", "Results", "all runs · each study"),
    ("m", "Results", "metric: accuracy · macro-F1 · κ · ECE"),
    ("i", "Results", "show the 95% intervals"),
    ("a", "Results", "a sweep: the next axis (then the best combination)"),
    ("n", "Results", "the notes under the table in full · folded"),
    ("e h", "Results", "export the tables (CSV and Markdown) · the HTML report"),
    ("p", "Results", "plan seeds: how many a gain needs at 80% power (one study)"),
]
NOTE = ("Runs train in a detached `kdengine worker`: quitting the app or closing the SSH session "
        "does not stop them. Reopen kdtui to re-attach.")


def help_table():
    table = Table(title="kdstudy · keys", box=None, header_style="bold", padding=(0, 1), caption=NOTE,
                  caption_justify="left")
    table.add_column("key", style="bold yellow", no_wrap=True)
    table.add_column("where", style="dim")
    table.add_column("what")
    for row in KEYS:
        table.add_row(*row)
    return table



class HelpScreen(ModalScreen[None]):
    """The keys; it scrolls (↑ ↓ pgup pgdn) where the terminal is shorter than the list."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "keys · ↑ ↓ scroll · esc closes"
            yield Static(help_table())

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
