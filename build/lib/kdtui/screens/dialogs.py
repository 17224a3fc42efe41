"""Modal screens: help, and the CSV export path."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.containers import VerticalScroll
from textual.widgets import Input, Label, Static

KEYS = [
    ("1 2 3", "anywhere", "Runs · Launch · Results"),
    ("? F1", "anywhere", "this help"),
    ("ctrl+p", "anywhere", "command palette: every action"),
    ("q", "anywhere", "quit (runs go on in the worker)"),
    ("↑ ↓", "Runs", "select a run"),
    ("c m p", "Runs", "curves · confusion matrix · report"),
    ("s", "Runs", "stop the selected run"),
    ("w", "Runs", "start a background worker"),
    ("tab", "Launch", "next field"),
    ("esc", "Launch", "leave the form (then 1 2 3 q work)"),
    ("F2 F3", "Launch", "CPU-quick preset · thesis preset"),
    ("F5", "Launch", "launch the run(s)"),
    ("[ ]", "Results", "previous · next table"),
    ("← →", "Results", "scroll a wide table"),
    ("v", "Results", "all runs · each study"),
    ("i", "Results", "show the 95% intervals"),
    ("e", "Results", "export the tables as CSV"),
]
NOTE = ("Runs train in a detached `kdengine worker`: quitting the app or closing the SSH session "
        "does not stop them. Reopen kdtui to re-attach.")


def help_table():
    from rich.table import Table

    table = Table(title="kdstudy · keys", box=None, header_style="bold", padding=(0, 1), caption=NOTE,
                  caption_justify="left")
    table.add_column("key", style="bold yellow", no_wrap=True)
    table.add_column("where", style="dim")
    table.add_column("what")
    for row in KEYS:
        table.add_row(*row)
    return table



class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_table())


class ExportScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label("Export the tables as CSV into the folder:")
            yield Input(self.default, id="export-path")
            yield Label("enter: export · escape: cancel", classes="note")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
