"""``kdtui``: the interactive study app. It reads the run store and starts workers; it never imports torch.

It talks to the engine through one handle, ``api.open(runs_dir)`` (``self.store``), and never on the UI thread:
each screen reads in a ``@work(thread=True)`` worker that posts what it read as a message, and the app carries out
what the screens request (:mod:`kdtui.messages`) the same way. Its screens, their keys, the help and the command
palette come from one table (:mod:`kdtui.screens`)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingsMap
from textual.message import Message
from textual.screen import Screen

from kdengine import api

from .messages import Answered, ExportRequested, Request, TrainingWorkersRequested, shown_path
from .screens import ScreenEntry, screens
from .screens.dialogs import ExportScreen, HelpScreen, WorkerScreen
from .serve import DEFAULT_HOST, DEFAULT_PORT, ServeError, serve


class GpusCounted(Message):
    """How many GPUs this machine shows (nvidia-smi, asked once off the UI thread); ``ask``: then offer the worker
    dialog."""

    def __init__(self, count: int, ask: bool = False) -> None:
        super().__init__()
        self.count = count
        self.ask = ask


class KDStudyApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "kdstudy"
    DEFAULT_MODE = "runs"
    # Screen keys (1 2 3 4, from the table of screens) are not priority bindings: in a text field a digit is typed,
    # never a screen change.
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False, priority=True),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, runs_dir: Path | str | None = None, theme: str | None = None,
                 start_workers: bool = True) -> None:
        super().__init__()
        self.store = api.open(runs_dir, check=False)  # an unusable store is said when a screen reads it
        self.start_workers = start_workers
        self.spawned_workers: list[int] = []  # the training workers this app started
        self.gpus: int | None = None  # this machine's GPUs, once counted
        self.screen_table: list[ScreenEntry] = screens()
        for entry in self.screen_table:
            self.add_mode(entry.name, entry.screen)
        # the screen keys first, then the app's own: the footer lists them in this order
        keys = [Binding(e.key, f"switch_mode('{e.name}')", e.title) for e in self.screen_table]
        old = self._bindings  # Textual's per-instance bindings (App.bind appends; the screen keys lead)
        self._bindings = BindingsMap(keys)
        for key, bindings in old.key_to_bindings.items():
            self._bindings.key_to_bindings.setdefault(key, []).extend(bindings)
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        self.count_gpus()  # nvidia-smi once, off the UI thread, before a run line or a dialog asks

    @work(thread=True, group="gpus")
    def count_gpus(self, ask: bool = False) -> None:
        try:
            count = self.store.gpu_count()
        except Exception:  # noqa: BLE001 - nvidia-smi unusable: no GPU to offer
            count = 0
        self.post_message(GpusCounted(count, ask))

    def on_gpus_counted(self, message: GpusCounted) -> None:
        self.gpus = message.count
        if message.ask:
            self.ask_training_worker()

    # -- what the screens request, carried out off the UI thread ----------------------------------------------------
    @on(Request)
    def _requested(self, request: Request) -> None:
        if isinstance(request, ExportRequested) and request.path is None:
            self.ask_export(request)
        else:
            self.carry_out(request)

    @work(thread=True, group="store")
    def carry_out(self, request: Request) -> None:
        """A request's use case in a worker thread; what came of it is posted back (:class:`Answered`)."""
        try:
            outcome = request.carry_out(self.store)
        except Exception as exc:  # noqa: BLE001 - a refused action, an unwritable store: said, never a crash
            self.post_message(Answered(request, error=exc))
            return
        self.post_message(Answered(request, outcome))

    def on_answered(self, message: Answered) -> None:
        request = message.request
        if message.error is not None:
            self.notify(f"{request.failed}{message.error}", severity=request.severity, title=request.title)
            return
        said = request.say(message.outcome)
        if said:
            self.notify(said, title=request.title)
        request.after(self, message.outcome)

    # -- actions ---------------------------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen_table))

    def action_export(self, study: str | None = None, metric: str = "accuracy", report: bool = False) -> None:
        """Ask for a folder, then write the tables (`kdengine table`, `study table`) or the HTML report
        (`kdengine report`) of all runs or of one study."""
        self.ask_export(ExportRequested(study, metric, report))

    def ask_export(self, request: ExportRequested) -> None:
        def done(path: str | None) -> None:
            if path:
                request.path = path
                self.carry_out(request)

        what = "report" if request.report else "tables"
        # beside the store's other reports (shift's robustness tables), never in the working directory: in a clone
        # that is the repository, where they would show in git status
        default = self.store.root / "reports" / (f"{request.study}-{what}" if request.study else f"all-{what}")
        label = "Write the HTML report into the folder:" if request.report else \
            "Export the tables (CSV and Markdown) into the folder:"
        self.push_screen(ExportScreen(str(default), label), done)

    def start_training_workers(self, device: str = "auto", runs_per_gpu: str = "1") -> None:
        """Make sure detached training workers serve the store (``runs_per_gpu`` per GPU; one on the CPU)."""
        if self.start_workers:
            self.carry_out(TrainingWorkersRequested(device, runs_per_gpu))

    def ask_training_worker(self) -> None:
        """The worker dialog (device and packing), offered this machine's GPUs (counted off the UI thread, once)."""
        if self.gpus is None:
            self.count_gpus(ask=True)
            return

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice:
                self.start_training_workers(*choice)

        self.push_screen(WorkerScreen(self.gpus), chosen)

    def show_run(self, run_id: str) -> None:
        """The run list, with ``run_id`` selected (a run just launched: the next read of the list holds it)."""
        self.switch_mode(self.DEFAULT_MODE)
        self.call_after_refresh(lambda: getattr(self.screen, "select_run", lambda _rid: None)(run_id))

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Save into a folder that exists and is writable (Textual's default, ~/Downloads, often does not exist
        on a server), and say where."""
        for folder in (Path(path) if path else None, self.store.root / "screenshots", Path(tempfile.gettempdir())):
            if folder is None:
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
                saved = self.save_screenshot(filename, str(folder), time_format)
            except OSError:
                continue
            self.notify(f"screenshot saved to\n{shown_path(saved)}", title="Screenshot")
            return saved
        self.notify("could not save the screenshot anywhere", severity="error")
        return None

    def on_screen_action(self, mode: str, action: str) -> None:
        """Show a screen, then run one of its actions (a palette entry it declares)."""
        self.switch_mode(mode)
        self.call_after_refresh(lambda: self.screen.run_action(action))

    def action_toggle_ansi(self) -> None:
        self.theme = "textual-dark" if self.theme == "ansi-dark" else "ansi-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's "Keys" panel would be a second help beside kdstudy's own (?): one help entry
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        for e in self.screen_table:
            yield SystemCommand(e.title, e.description, lambda mode=e.name: self.switch_mode(mode))
        yield SystemCommand("Export tables", "Write every table as CSV and Markdown, and runs.csv", self.action_export)
        yield SystemCommand("Export report", "Write a self-contained HTML report (tables, curves, confusion "
                            "matrices, robustness)", lambda: self.action_export(report=True))
        for e in self.screen_table:
            for title, help_, action in getattr(e.screen, "COMMANDS", ()):
                yield SystemCommand(title, help_, lambda mode=e.name, act=action: self.on_screen_action(mode, act))
        yield SystemCommand("Toggle ANSI theme", "Switch between the default and the terminal's ANSI colours",
                            self.action_toggle_ansi)
        yield SystemCommand("Help", "Key bindings", self.action_help)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as kdengine says it
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    p = _Parser(prog="kdtui", description="kdstudy: knowledge-distillation studies in the terminal")
    p.add_argument("--runs-dir", default=None, help="run store (default: $KDSTUDY_HOME or ./runs)")
    p.add_argument("--ansi", action="store_true", help="use the terminal's ANSI colours")
    p.add_argument("--theme", default=None, help="a Textual theme name")
    web = p.add_argument_group("in a browser (textual-serve)")
    web.add_argument("--serve", action="store_true",
                     help="serve kdtui to a browser tab instead of this terminal (each tab runs its own kdtui)")
    web.add_argument("--host", default=None, help=f"address to listen on (default: {DEFAULT_HOST}, this machine "
                                                  "only; reach it from a laptop with ssh -L)")
    web.add_argument("--port", type=int, default=None, help=f"port to listen on (default: {DEFAULT_PORT})")
    args = p.parse_args(argv)
    if not args.serve and (args.host is not None or args.port is not None):
        p.error("--host and --port go with --serve")
    theme = "ansi-dark" if args.ansi else args.theme
    try:
        root = api.open(args.runs_dir, check=False).root
        if root.exists() and not root.is_dir():
            raise ValueError(f"the runs dir {root} is a file, not a folder (pass --runs-dir DIR)")
        app = KDStudyApp(root, theme=theme)  # also checks the theme and the store before a server starts
    except Exception as exc:  # noqa: BLE001 - an unknown theme name, an unusable runs dir
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.serve:
        try:
            serve(root, args.host or DEFAULT_HOST, DEFAULT_PORT if args.port is None else args.port, theme)
        except ServeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
