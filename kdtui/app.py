"""``kdtui``: the interactive study app. It reads the run store and starts workers; it never imports torch."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from kdengine import api
from kdengine.api import runs_dir as default_runs_dir
from kdengine.api import describe_written
from kdengine.api import RunSpec
from kdengine.api import RunStore

from .forms import PRESETS, describe_settings
from .messages import ExportRequested, LaunchRequested, RemoveRequested, RetryRequested, StopRequested
from .screens.dialogs import ExportScreen, HelpScreen, WorkerScreen
from .screens.launch import LaunchScreen
from .screens.results import ResultsScreen
from .screens.run_detail import local_gpus
from .screens.runs import RunsScreen
from .screens.workers import WorkersScreen
from .serve import DEFAULT_HOST, DEFAULT_PORT, ServeError, serve


class KDStudyApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "kdstudy"
    MODES = {"runs": RunsScreen, "launch": LaunchScreen, "results": ResultsScreen, "workers": WorkersScreen}
    DEFAULT_MODE = "runs"
    # Screen keys are not priority bindings: in a text field a digit is typed, never a screen change.
    BINDINGS = [
        Binding("1", "switch_mode('runs')", "Runs"),
        Binding("2", "switch_mode('launch')", "Launch"),
        Binding("3", "switch_mode('results')", "Results"),
        Binding("4", "switch_mode('workers')", "Workers"),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False, priority=True),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, runs_dir: Path | str | None = None, theme: str | None = None,
                 start_workers: bool = True) -> None:
        super().__init__()
        self.store = RunStore(default_runs_dir(runs_dir))
        self.start_workers = start_workers
        self.spawned: list[int] = []
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        self.call_api(local_gpus, lambda _n: None)  # nvidia-smi once, off the UI thread, before a dialog asks

    # -- actions -------------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_export(self, study: str | None = None, metric: str = "accuracy", report: bool = False) -> None:
        """Ask for a folder, then write the tables (`kdengine table`, `study table`) or the HTML report
        (`kdengine report`) of all runs or of one study."""

        def done(path: str | None) -> None:
            if path and report:
                self.export_report(path, study, metric)
            elif path:
                self.export_tables(path, study, metric)

        what = "report" if report else "tables"
        # beside the store's other reports (shift's robustness tables), never in the working directory: in a clone
        # that is the repository, where they would show in git status
        default = self.store.root / "reports" / (f"{study}-{what}" if study else f"all-{what}")
        label = "Write the HTML report into the folder:" if report else \
            "Export the tables (CSV and Markdown) into the folder:"
        self.push_screen(ExportScreen(str(default), label), done)

    @work(thread=True, exclusive=True, group="export")
    def export_report(self, path: str, study: str | None = None, metric: str = "accuracy") -> None:
        try:
            written = api.report(self.store, study, metric, Path(path).expanduser())
            self.call_from_thread(self.notify, f"wrote the report {written}", title="Report")
        except Exception as exc:  # noqa: BLE001 - an unwritable folder, no finished run: say so
            self.call_from_thread(self.notify, f"report failed: {exc}", severity="error", title="Report")

    @work(thread=True, exclusive=True, group="export")
    def export_tables(self, path: str, study: str | None = None, metric: str = "accuracy") -> None:
        try:
            out = Path(path).expanduser()
            paths = api.export_tables(api.tables(self.store, study, metric), out, "both")
            self.call_from_thread(self.notify, f"wrote {describe_written(paths)} to {out}", title="Export")
        except Exception as exc:  # noqa: BLE001 - an unwritable folder must not crash the app
            self.call_from_thread(self.notify, f"export failed: {exc}", severity="error", title="Export")

    # -- the store's use cases, off the UI thread (they read and write the store, and may start processes) ---------
    @work(thread=True, group="store")
    def call_api(self, call, done, failed: str = "", severity: str = "warning") -> None:
        """Run ``call()`` (one kdengine.api use case) in a worker thread, then ``done(result)`` on the UI thread;
        an error is said in a notification (``failed`` leads it), never a crash."""
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - a refused action, an unwritable store: said, never a crash
            self.call_from_thread(self.notify, f"{failed}{exc}", severity=severity)
            return
        self.call_from_thread(done, result)

    def _started(self, pids: list[int], quiet_when_running: bool = False) -> None:
        self.spawned.extend(pids)
        if pids or not quiet_when_running:
            self.notify(f"started worker pid {', '.join(map(str, pids))}" if pids else "a worker is already running")

    def start_worker(self, device: str = "auto", runs_per_gpu: str = "1") -> None:
        """Make sure detached workers serve the store (``runs_per_gpu`` per GPU; one on the CPU)."""
        if self.start_workers:
            self.call_api(lambda: api.start_workers(self.store, device, runs_per_gpu), self._started,
                          "could not start a worker: ", "error")

    def ask_worker(self) -> None:
        """The worker dialog (device and packing), offered this machine's GPUs (nvidia-smi, asked off the UI
        thread, once)."""

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice:
                self.start_worker(*choice)

        self.call_api(local_gpus, lambda n: self.push_screen(WorkerScreen(n), chosen))

    def launch(self, spec: RunSpec, device: str = "auto", with_baseline: bool = True, runs_per_gpu: str = "1") -> None:
        """Queue ``spec`` (teachers first, then the student's baseline) and make sure a worker will train it
        (``api.launch``), then show it in the run list."""

        def done(result) -> None:
            queued, pids = result
            self._started(pids, quiet_when_running=not self.start_workers)
            self.switch_mode("runs")
            screen = self.screen
            if isinstance(screen, RunsScreen):
                self.call_after_refresh(screen.select_run, queued.run_id)

        self.call_api(lambda: api.launch(self.store, spec, device, with_baseline, runs_per_gpu,
                                         workers=self.start_workers), done, "could not launch: ", "error")

    # -- requests from the screens ---------------------------------------------------------------------
    def on_launch_requested(self, message: LaunchRequested) -> None:
        self.launch(message.spec, message.device, message.with_baseline, message.runs_per_gpu)

    def on_stop_requested(self, message: StopRequested) -> None:
        rid = message.run_id
        self.call_api(lambda: api.stop(self.store, rid), lambda done: self.notify(f"{rid}: {done}"))

    def on_retry_requested(self, message: RetryRequested) -> None:
        rid, force = message.run_id, message.force

        def call() -> str:
            done = api.retry(self.store, rid, force=force)
            return done + ("" if self.store.live_workers() else " (no worker is running: press w)")

        self.call_api(call, lambda done: self.notify(f"{rid}: {done}"))

    def on_remove_requested(self, message: RemoveRequested) -> None:
        rid, archive = message.run_id, message.archive
        self.call_api(lambda: api.remove(self.store, rid, archive=archive),
                      lambda where: self.notify(f"archived {rid} to {where}" if where else f"deleted {rid}"),
                      f"could not remove {rid}: ", "error")

    def on_export_requested(self, message: ExportRequested) -> None:
        self.action_export(message.study, message.metric, message.report)

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
            self.notify(f"screenshot saved to {saved}", title="Screenshot")
            return saved
        self.notify("could not save the screenshot anywhere", severity="error")
        return None

    def action_preset(self, name: str) -> None:
        self.switch_mode("launch")
        self.call_after_refresh(lambda: self.screen.action_preset(name))

    def _on_runs(self, action: str) -> None:
        """Run a Runs-screen action from the palette (on the run selected there)."""
        self.switch_mode("runs")
        self.call_after_refresh(lambda: getattr(self.screen, action)())

    def _study_file(self) -> None:
        self.switch_mode("launch")
        self.call_after_refresh(lambda: self.screen.query_one("#study_file").focus())

    def action_toggle_ansi(self) -> None:
        self.theme = "textual-dark" if self.theme == "ansi-dark" else "ansi-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Runs", "Monitor runs: curves, confusion matrix, report", lambda: self.switch_mode("runs"))
        yield SystemCommand("Launch", "Set up and launch a run", lambda: self.switch_mode("launch"))
        yield SystemCommand("Results", "The comparative accuracy tables", lambda: self.switch_mode("results"))
        yield SystemCommand("Export tables", "Write every table as CSV and Markdown, and runs.csv", self.action_export)
        yield SystemCommand("Export report", "Write a self-contained HTML report (tables, curves, confusion "
                            "matrices, robustness)", lambda: self.action_export(report=True))
        yield SystemCommand("Run a study file", "Queue a study TOML file (or preset) and start workers (Launch, F6)",
                            self._study_file)
        yield SystemCommand("Act on all runs shown", "Stop, retry, delete or archive every run the list shows "
                            "(filter first: a study, a state, a model)", lambda: self._on_runs("action_act_on_shown"))
        yield SystemCommand("Start worker", "Start a detached background worker (choose its device)",
                            lambda: self._on_runs("action_start_worker"))
        yield SystemCommand("Stop run", "Stop the selected run (asks first)", lambda: self._on_runs("action_stop_run"))
        yield SystemCommand("CPU-quick preset", "Fill the launch form for a quick CPU run",
                            lambda: self.action_preset("cpu-quick"))

        yield SystemCommand("Thesis preset", describe_settings(PRESETS["thesis"]), lambda: self.action_preset("thesis"))
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
    root = default_runs_dir(args.runs_dir)
    try:
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
