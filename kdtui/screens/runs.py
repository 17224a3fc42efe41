"""The monitor: the runs list (a hundred runs: it fills the height, filters, sorts, groups by study), and the
selected run's curves (overlaid with its teachers', its baseline's and a pinned run's), confusion matrix and
report. Stopping asks first; retry, delete and the worker dialog are one key each.

Split by what it shows: ``run_list`` (the list), ``run_detail`` (the selected run), ``run_actions`` (what is done
to runs); this module holds the screen itself: its keys, its widgets, the poll and the selection."""
from __future__ import annotations

import asyncio

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from ..store_view import RunRow, RunView, load_rows
from ..widgets.confusion import ConfusionPane, ReportPane
from ..widgets.curves import CurvesPane
from ..widgets.looks import LooksPane
from .run_actions import RunActionsMixin
from .run_detail import RunDetailMixin
from .run_list import GROUP, Column, RunListMixin, RunsTable

POLL_S = 1.0
SHORT_SCREEN_ROWS = 32


class RunsScreen(RunListMixin, RunDetailMixin, RunActionsMixin, Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("g", "next_running", "Running"),
        Binding("s", "stop_run", "Stop"),
        Binding("r", "retry_run", "Retry"),
        Binding("w", "start_worker", "Worker"),
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
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, RunRow] = {}
        self.shown: list[str] = []  # the table's row keys, in order (run ids, and group headers)
        self.selected: str | None = None
        self.pending: str | None = None  # a run to select once it is in the table (just launched)
        self.view: RunView | None = None
        self.overlay_views: list[tuple[str, RunView]] = []
        self.pinned: RunView | None = None
        self.query_text = ""
        self.sort = "created"
        self.reverse = False
        self.by_study = False
        self.workers_alive = True
        self.report_split = "test"
        self.look_index = 0  # the image the Looks pane shows (kept across runs: one image, model after model)
        self.columns: tuple[Column, ...] = ()
        self._drawn_version = -1

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: any words of state, strategy, model, study, device · esc clears",
                    id="runs-filter", compact=True)
        yield Static("", id="list-line")
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="run-line")
        with TabbedContent(id="panes", initial="curves"):
            with TabPane("Curves [c]", id="curves"):
                yield CurvesPane(id="curves-pane")
            with TabPane("Confusion [m]", id="confusion"):
                yield ConfusionPane(id="confusion-pane")
            with TabPane("Report [p]", id="report"):
                yield ReportPane(id="report-pane")
            with TabPane("Details [i]", id="details"):
                yield Static("", id="details-pane")
            with TabPane("Looks [l]", id="looks"):
                yield LooksPane("", id="looks-pane")
        yield Footer()

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width)
        self.query_one("#runs-filter").display = False
        self.query_one(DataTable).focus()
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)

    def on_screen_resume(self) -> None:
        self.call_after_refresh(self.poll)  # back from another screen: the list as it is now, not at the next tick

    async def poll(self) -> None:
        if not self.is_current:  # another mode is on display: nothing to refresh
            return
        try:
            _, rows = await asyncio.to_thread(load_rows, self.app.store)
            self.workers_alive = bool(await asyncio.to_thread(self.app.store.live_workers))
            self._update_table(rows)
            await self._poll_selected()
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.query_one("#run-line", Static).update(Text(f"cannot read the run store: {exc}", style="red"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and key.startswith(GROUP):  # a study's header: the detail keeps its run
            return
        if key is not None and key != self.selected:
            self._select(key)
            self._draw_line(None)  # at once, from the list's own data; the panes follow after their read
            self.call_later(self._poll_selected)

    def _select(self, run_id: str) -> None:
        """The detail pane follows the highlighted row: they always show the same run."""
        self.selected = run_id
        store = self.app.store
        self.view = RunView(store, run_id)
        overlays = [(f"T {RunView(store, t).model}", RunView(store, t)) for t in self.view.teacher_ids]
        if self.view.baseline_id and store.exists(self.view.baseline_id):
            overlays.append((f"B {self.view.model}", RunView(store, self.view.baseline_id)))
        self.overlay_views = overlays
        self._drawn_version = -1

    def select_run(self, run_id: str) -> None:
        """Select (and move the cursor to) a run, e.g. one just launched; if the list does not hold it yet,
        the next poll selects it."""
        table = self.query_one(DataTable)
        if run_id in self.shown:
            table.move_cursor(row=self.shown.index(run_id))
            self._select(run_id)
        else:
            self.pending = run_id
            if self.query_text:  # a filter that hides the new run is cleared
                self.action_clear_filter()

    async def _poll_selected(self) -> None:
        if self.view is None:
            return
        view = self.view
        changed = await asyncio.to_thread(view.poll)
        for _, other in self.overlay_views:
            changed |= await asyncio.to_thread(other.poll)
        if self.pinned is not None:
            changed |= await asyncio.to_thread(self.pinned.poll)
        if view is self.view and (changed or self._drawn_version != view.version):
            self._drawn_version = view.version
            self._draw(view)

    def on_resize(self, event: events.Resize) -> None:
        # Below 32 rows an even split leaves the curves two rows of plot: give the panes two thirds.
        self.query_one("#panes").set_class(event.size.height < SHORT_SCREEN_ROWS, "-short-screen")
        self._set_columns(event.size.width)
