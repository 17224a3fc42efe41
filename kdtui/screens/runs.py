"""The monitor: the run list (a hundred runs: it fills the height, filters, sorts, groups by study) and the selected
run in full (its curves overlaid with its teachers', its baseline's and a pinned run's; confusion matrix; report;
details; looks). Stopping asks first; retry, delete and the worker dialog are one key each.

Two components, each owning its state and reading the store off the UI thread: ``RunList`` (the table) says which
run is selected (:class:`RunList.Selected`), ``RunDetail`` (the panes) shows it. This screen lays them out with the
list's filter and line and the run's line (``RunLine``) between them, passes on what they post, and holds the keys,
the poll and what is done to runs (requests the app carries out)."""
from __future__ import annotations

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from rich.text import Text
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from kdengine import api

from ..messages import BatchRequested, RemoveRequested, RetryRequested, StopRequested
from ..widgets.run_detail import RunDetail, RunLine
from ..widgets.run_list import RunList
from . import register_screen
from .dialogs import ConfirmScreen

POLL_S = 1.0
SHORT_SCREEN_ROWS = 32


class RemovalRead(Message):
    """What deleting a run would take with it, read off the UI thread before the question is asked."""

    def __init__(self, removal: api.Removal | None, error: Exception | None = None) -> None:
        super().__init__()
        self.removal = removal
        self.error = error


@register_screen("runs", "1", "Runs", "Monitor runs: curves, confusion matrix, report")
class RunsScreen(Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        # g and w are in the help (?) and the palette: at 80 columns the footer keeps room for every screen's key
        Binding("g", "next_running", "Running", show=False),
        Binding("s", "stop_run", "Stop"),
        Binding("r", "retry_run", "Retry"),
        Binding("w", "start_worker", "Worker", show=False),
        Binding("A", "act_on_shown", "All shown", show=False),
        Binding("o", "sort(1)", "Sort", show=False),
        Binding("O", "sort(-1)", "Reverse", show=False),
        Binding("b", "group", "By study", show=False),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("d", "remove_run", "Delete", show=False),
        Binding("x", "pin", "Pin", show=False),
        Binding("c", "pane('curves')", "Curves", show=False),
        Binding("m", "pane('confusion')", "Matrix", show=False),
        Binding("p", "pane('report')", "Report", show=False),
        Binding("i", "pane('details')", "Details", show=False),
        Binding("l", "pane('looks')", "Looks", show=False),
        Binding("L", "look(-1)", "Previous image", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    HELP = [
        ("↑ ↓ home end", "select a run (pgup pgdn: a page)"),
        ("/ esc", "filter by any text (state, strategy, model, study, device) · clear it"),
        ("o O", "sort by the next column · reverse"),
        ("b", "group by study (a header per study)"),
        ("A", "stop, retry, delete or archive every run shown (asks)"),
        ("g", "jump to the next running run"),
        ("z", "the list alone (zoom) · back"),
        ("c m p i", "curves · confusion matrix · report (p again: next split) · details"),
        ("x", "pin the run: its curves overlay every other run's (x again: unpin)"),
        ("l L", "where it looks (kdengine explain): l again / L next / previous image"),
        ("s r d", "stop (asks) · retry or resume · delete or archive (asks)"),
        ("w", "start a background worker (choose its device)"),
    ]
    COMMANDS = [
        ("Act on all runs shown", "Stop, retry, delete or archive every run the list shows (filter first: a study, "
         "a state, a model)", "act_on_shown"),
        ("Start worker", "Start a detached background worker (choose its device)", "start_worker"),
        ("Stop run", "Stop the selected run (asks first)", "stop_run"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: any words of state, strategy, model, study, device · esc clears",
                    id="runs-filter", compact=True)
        yield Static(Text("reading the run store…", style="dim"), id="list-line")
        yield RunList(id="runs-table")
        yield RunLine("", id="run-line")
        yield RunDetail(id="run-detail")
        yield Footer()

    @property
    def run_list(self) -> RunList:
        return self.query_one(RunList)

    @property
    def detail(self) -> RunDetail:
        return self.query_one(RunDetail)

    # what the screen shows, for tests and benchmarks: the list's rows, order and selection, the selected run
    @property
    def rows(self) -> dict[str, api.RunRow]:
        return self.run_list.runs

    @property
    def shown(self) -> list[str]:
        return self.run_list.shown

    @property
    def selected(self) -> str | None:
        return self.run_list.selected

    @property
    def view(self) -> api.RunDetail | None:
        return self.detail.view

    @property
    def _drawn_version(self) -> int:
        return self.detail.drawn_version

    def on_mount(self) -> None:
        self.query_one("#runs-filter").display = False
        self.run_list.set_width(self.app.size.width)
        self.run_list.focus()
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)

    def on_screen_resume(self) -> None:
        self.call_after_refresh(self.poll)  # back from another screen: the list as it is now, not at the next tick

    def poll(self) -> None:
        """Read the list and the selected run again (each in its own worker thread)."""
        if not self.is_current:  # another mode is on display: nothing to refresh
            return
        self.run_list.refresh_rows()
        self.detail.refresh_run()

    # -- what the components post ----------------------------------------------------------------------------------
    def on_run_list_selected(self, message: RunList.Selected) -> None:
        self.detail.show_run(message.row)
        if message.row is None:
            self.query_one(RunLine).say(Text("No run matches the filter (esc clears it)." if message.total else
                                             "No runs yet: press 2 to launch one, or run `kdengine train` in a "
                                             "shell.", style="dim"))
        else:
            self._draw_run_line()

    def on_run_list_changed(self, _message: RunList.Changed) -> None:
        run_list = self.run_list
        self.query_one("#list-line", Static).update(run_list.line(), layout=False)
        if run_list.loaded:
            self.sub_title = f"{len(run_list.runs)} runs · {run_list.running()} running · {self.app.store.root}"

    def on_run_detail_updated(self, message: RunDetail.Updated) -> None:
        if message.error is not None:
            self.query_one(RunLine).say(Text(f"cannot read the run store: {message.error}", style="red"))
        else:
            self._draw_run_line()

    def _draw_run_line(self) -> None:
        detail = self.detail
        self.query_one(RunLine).show(detail.run_id, detail.row, detail.view, self.run_list.workers_alive,
                                     self.app.gpus)

    def select_run(self, run_id: str) -> None:
        """Select (and move the cursor to) a run, e.g. one just launched; a filter that hides it is cleared."""
        if run_id not in self.run_list.shown and self.run_list.query_text:
            self.action_clear_filter()
        self.run_list.select_run(run_id)

    def on_resize(self, event: events.Resize) -> None:
        # Below 32 rows an even split leaves the curves two rows of plot: give the panes two thirds.
        self.detail.set_class(event.size.height < SHORT_SCREEN_ROWS, "-short-screen")
        self.run_list.set_width(event.size.width)

    # -- the list's keys -------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.run_list.filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "runs-filter":
            self.run_list.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.display or self.run_list.query_text:
            box.value = ""
            box.display = False
            self.run_list.focus()
            self.run_list.filter("")

    def action_sort(self, step: int) -> None:
        self.run_list.next_sort(step)

    def action_group(self) -> None:
        self.run_list.toggle_groups()

    def action_next_running(self) -> None:
        self.run_list.next_running()

    # -- the detail's keys -----------------------------------------------------------------------------------------
    def action_pane(self, pane: str) -> None:
        self.detail.pane(pane)

    def action_look(self, step: int) -> None:
        self.detail.look(step)

    def action_zoom(self) -> None:
        panes = self.detail.zoom()
        self.query_one(RunLine).display = panes
        self.run_list.set_class(not panes, "-zoomed")

    def action_pin(self) -> None:
        pinned = self.detail.toggle_pin()
        self.notify(f"pinned {pinned}: its curves overlay the other runs'" if pinned else "unpinned")
        self.run_list.pinned = pinned
        self.query_one("#list-line", Static).update(self.run_list.line(), layout=False)

    # -- what is done to runs --------------------------------------------------------------------------------------
    def _target(self, action: str) -> str | None:
        """The selected run, if ``action`` may be done to it (``RunRow.why_not``: the CLI's rule too)."""
        row = self.rows.get(self.selected) if self.selected else None
        if row is None:
            self.notify("no run selected", severity="warning")
            return None
        why = row.why_not(action)
        if why is not None:
            self.notify(f"{row.run_id} is {why}", severity="warning")
            return None
        return row.run_id

    def action_stop_run(self) -> None:
        rid = self._target("stop")
        if rid is None:
            return

        def done(answer: str | None) -> None:
            if answer == "y":
                self.post_message(StopRequested(rid))

        details = "It stops within a few seconds; its last finished epoch stays resumable (r)."
        self.app.push_screen(ConfirmScreen(f"Stop {rid}?", details), done)

    def action_retry_run(self) -> None:
        rid = self._target("retry")
        if rid is None:
            return
        row = self.rows[rid]
        if not row.unreadable or row.studies:  # a study asks for its runs by their settings: data.skip_bad there
            self.post_message(RetryRequested(rid))
            return

        def done(answer: str | None) -> None:
            if answer in ("s", "y"):
                self.post_message(RetryRequested(rid, skip_bad=answer == "s"))

        details = ("It failed on an image that could not be read: retried as it is, it fails again unless the file "
                   "was mended. With unreadable images skipped it is a new run (its images differ), queued in its "
                   "place with the students waiting for it.")
        self.app.push_screen(ConfirmScreen(f"Retry {rid}?", details,
                                           {"s": "skip unreadable images", "y": "as it is (the file was mended)"}),
                             done)

    def action_remove_run(self) -> None:
        rid = self._target("delete")
        if rid is not None:
            self.read_removal(rid)

    @work(thread=True, group="removal")
    def read_removal(self, run_id: str) -> None:
        try:
            self.post_message(RemovalRead(self.app.store.what_goes(run_id)))
        except Exception as exc:  # noqa: BLE001 - the run went meanwhile: said, never a crash
            self.post_message(RemovalRead(None, exc))

    def on_removal_read(self, message: RemovalRead) -> None:
        if message.removal is None:
            self.notify(f"cannot read the run: {message.error}", severity="warning")
            return
        rid = message.removal.run_id

        def done(answer: str | None) -> None:
            if answer in ("d", "a"):
                self.post_message(RemoveRequested(rid, archive=answer == "a"))

        self.app.push_screen(ConfirmScreen(f"Delete or archive {rid}?", removal_text(message.removal),
                                           {"d": "delete", "a": "archive"}), done)

    def action_start_worker(self) -> None:
        self.app.ask_training_worker()

    def action_act_on_shown(self) -> None:
        """Stop, retry, delete or archive every run the list shows (a filter, a study, a state): asks first."""
        ids = self.run_list.shown_runs()
        if not ids:
            self.notify("no run is shown", severity="warning")
            return
        query = self.run_list.query_text
        what = f"the {len(ids)} run(s) shown" + (f" (filter “{query}”)" if query else "")
        actions = {"s": "stop", "r": "retry", "d": "delete", "a": "archive"}

        def done(answer: str | None) -> None:
            if answer is not None:
                self.post_message(BatchRequested(actions[answer], ids))

        self.app.push_screen(ConfirmScreen(f"Act on {what}?", "stop: running and queued ones · retry: failed and "
                                           "stopped ones · delete or archive: all but running ones", actions), done)


def removal_text(removal: api.Removal) -> str:
    """What deleting a run takes with it, for the question: its size, and the runs that use it as a teacher."""
    lines = [f"{removal.bytes / 2**20:.1f} MB on disk ({removal.checkpoint_bytes / 2**20:.1f} MB of checkpoints)."]
    if removal.dependents:
        more = " …" if len(removal.dependents) > 5 else ""
        lines.append(f"{len(removal.dependents)} run(s) use it as a teacher and could not resume or be re-evaluated "
                     f"without it: {', '.join(removal.dependents[:5])}{more}")
    return "\n".join(lines)
