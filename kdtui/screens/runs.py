"""The monitor: the runs list (a hundred runs: it fills the height, filters, sorts, groups by study), and the
selected run's curves (overlaid with its teachers', its baseline's and a pinned run's), confusion matrix and
report. Stopping asks first; retry, delete and the worker dialog are one key each."""
from __future__ import annotations

import asyncio

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from kdengine import api
from kdengine.execution.launch import gpu_count
from kdengine.store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED

from ..messages import RemoveRequested, RetryRequested, StopRequested, WorkerRequested
from ..store_view import SORTS, STATE_ICONS, RunRow, RunView, arrange, load_rows
from ..widgets.confusion import ConfusionPane, ReportPane
from ..widgets.curves import CurvesPane
from .dialogs import ConfirmScreen, WorkerScreen

POLL_S = 1.0
SHORT_SCREEN_ROWS = 32
STATE_STYLE = {RUNNING: "bold green", FINISHED: "cyan", FAILED: "bold red", STOPPED: "yellow",
               QUEUED: "dim", "damaged": "bold magenta"}
COLUMNS = (("st", "state"), ("what", "what"), ("teacher → student", "who"), ("seed", "seed"),
           ("device", "device"), ("epoch", "epoch"), ("done", "done"), ("best val", "best"), ("ETA", "eta"))


class RunsTable(DataTable):
    """Home and End move to the first and the last run (DataTable's own scroll sideways)."""

    BINDINGS = [Binding("home", "first", "First", show=False), Binding("end", "last", "Last", show=False)]

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class RunsScreen(Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("g", "next_running", "Running"),
        Binding("s", "stop_run", "Stop"),
        Binding("r", "retry_run", "Retry"),
        Binding("w", "start_worker", "Worker"),
        Binding("o", "sort(1)", "Sort", show=False),
        Binding("O", "sort(-1)", "Reverse", show=False),
        Binding("b", "group", "By study", show=False),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("d", "remove_run", "Delete", show=False),
        Binding("x", "pin", "Pin", show=False),
        Binding("c", "pane('curves')", "Curves", show=False),
        Binding("m", "pane('confusion')", "Matrix", show=False),
        Binding("p", "pane('report')", "Report", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, RunRow] = {}
        self.shown: list[str] = []  # run ids in the table, in order
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
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#runs-filter").display = False
        table.focus()
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)

    # -- polling the store -----------------------------------------------------------------------------
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

    def _cells(self, r: RunRow) -> list:
        style = STATE_STYLE.get(r.state, "")
        return [Text(STATE_ICONS.get(r.state, "?"), style=style), Text(r.strategy[:11], style=style), r.who[:28],
                str(r.seed), r.device[:7], r.epoch, r.done, f"{r.best_val:.4f}" if r.best_val is not None else "",
                r.eta]

    def _update_table(self, rows: list[RunRow]) -> None:
        table = self.query_one(DataTable)
        previous = dict(self.rows)
        self.rows = {r.run_id: r for r in rows}
        shown = arrange(rows, self.query_text, self.sort, self.by_study, self.reverse)
        order = [r.run_id for r in shown]
        keep = self.pending or self.selected
        if order != self.shown:  # the set or the order changed: rebuild (cheap for hundreds of rows)
            table.clear()
            for r in shown:
                table.add_row(*self._cells(r), key=r.run_id)
            self.shown = order
            if keep in order:
                table.move_cursor(row=order.index(keep), animate=False)
        else:
            for r in shown:
                old = previous.get(r.run_id)
                if old != r:
                    for (_, key), value, before in zip(COLUMNS, self._cells(r), self._cells(old) if old else []):
                        if value != before:  # widths change only when a cell grows: no layout pass otherwise
                            table.update_cell(r.run_id, key, value, update_width=len(str(value)) > len(str(before)))
        if self.pending in order:
            self.pending = None
        if order and (self.selected not in order):
            self._select(order[table.cursor_row] if 0 <= table.cursor_row < len(order) else order[0])
        self._draw_list_line(len(rows), len(shown))
        if not rows:
            self.query_one("#run-line", Static).update(
                Text("No runs yet: press 2 to launch one, or run `kdengine train` in a shell.", style="dim"))

    def _draw_list_line(self, total: int, shown: int) -> None:
        running = sum(r.state == RUNNING for r in self.rows.values())
        queued = sum(r.state == QUEUED for r in self.rows.values())
        line = Text(f"{shown} of {total} runs · {running} running · {queued} queued", style="bold")
        line.append(f" · sort {self.sort}{' ↓' if self.reverse else ''}" + (" · by study" if self.by_study else ""),
                    style="dim")
        if self.query_text:
            line.append(f" · filter “{self.query_text}”", style="yellow")
        if self.pinned is not None:
            line.append(f" · pinned {self.pinned.run_id[:28]}", style="magenta")
        self.query_one("#list-line", Static).update(line, layout=False)
        self.sub_title = f"{total} runs · {running} running · {self.app.store.root}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value != self.selected:
            self._select(event.row_key.value)
            self._draw_line(None)  # at once, from the list's own data; the panes follow after their read
            self.call_later(self._poll_selected)

    def on_tabbed_content_tab_activated(self, event) -> None:
        if self.view is not None:
            self._draw_panes(self.view)

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

    def _draw(self, view: RunView) -> None:
        self._draw_line(view)
        self._draw_panes(view)

    def _draw_line(self, view: RunView | None) -> None:
        """The selected run in a line or two: state, phase, device, reason, test metrics."""
        rid = view.run_id if view is not None else self.selected
        row = self.rows.get(rid)
        line = Text(str(rid), style="bold")
        if row is not None:
            line.append(f"  {row.state}", style=STATE_STYLE.get(row.state, ""))
            if row.phase and row.state == RUNNING:
                line.append(f" · {row.phase}")
            line.append(f" · {row.device}", style="dim")
            if row.reason:
                line.append(f" · {row.reason}", style="red" if row.state in (FAILED, "damaged") else "yellow")
            if row.state == QUEUED and not self.workers_alive:
                line.append("  no worker is running: press w to start one", style="bold yellow")
        if view is not None and view.metrics:
            m = view.metrics
            line.append(f"  test acc {m['test']['accuracy']:.4f} · F1 {m['test']['macro_f1']:.4f} · κ {m['test']['kappa']:.3f}")
            if m.get("synthetic"):
                line.append("  [synthetic data]", style="dim")
        for w in (view.warnings[-1:] if view is not None else []):
            line.append(f"\n{w}", style="yellow")
        self.query_one("#run-line", Static).update(line, layout=False)  # a fixed height: no layout pass

    def _draw_panes(self, view: RunView) -> None:
        """Only the pane on display is drawn (the others when their tab is chosen)."""
        active = self.query_one(TabbedContent).active
        if active == "curves":
            self._draw_curves(view)
        elif active == "confusion":
            self.query_one(ConfusionPane).show(view.confusion, view.class_names, view.confusion_label)
        else:
            self._draw_report(view)

    def _draw_curves(self, view: RunView) -> None:
        overlays = [(label, v.curves) for label, v in self.overlay_views]
        if self.pinned is not None and self.pinned.run_id != view.run_id:
            overlays.append((f"≈ {self.pinned.model}", self.pinned.curves))
        role = "teacher" if view.spec is not None and view.spec.kind == "ce" else "student"
        pinned = self.pinned.run_id if self.pinned is not None else ""
        self.query_one(CurvesPane).show(view.curves, overlays, f"{role} {view.model}", key=f"{view.run_id}|{pinned}")

    def _draw_report(self, view: RunView) -> None:
        summary = ""
        if view.metrics:
            t = view.metrics["test"]
            summary = f"test: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, kappa {t['kappa']:.4f}, ECE {t['ece']:.4f}"
            if "agreement" in t:
                summary += f", agreement {t['agreement']:.4f}"
        self.query_one(ReportPane).show(view.report(), "classification report (" + ("test" if view.metrics else "val, latest epoch") + ")", summary)

    # -- the list ------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.query_text = event.value.strip()
            self._update_table(list(self.rows.values()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "runs-filter":
            self.query_one(DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.display or self.query_text:
            box.value = ""
            box.display = False
            self.query_text = ""
            self.query_one(DataTable).focus()
            self._update_table(list(self.rows.values()))

    def action_sort(self, step: int) -> None:
        if step < 0:
            self.reverse = not self.reverse
        else:
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._update_table(list(self.rows.values()))

    def action_group(self) -> None:
        self.by_study = not self.by_study
        self._update_table(list(self.rows.values()))

    def action_next_running(self) -> None:
        running = [i for i, rid in enumerate(self.shown) if self.rows[rid].state == RUNNING]
        if not running:
            self.notify("no run is running", severity="warning")
            return
        table = self.query_one(DataTable)
        nxt = next((i for i in running if i > table.cursor_row), running[0])
        table.move_cursor(row=nxt)

    def on_resize(self, event: events.Resize) -> None:
        # Below 32 rows an even split leaves the curves two rows of plot: give the panes two thirds.
        self.query_one("#panes").set_class(event.size.height < SHORT_SCREEN_ROWS, "-short-screen")

    def action_zoom(self) -> None:
        panes = self.query_one("#panes")
        panes.display = not panes.display
        self.query_one("#run-line").display = panes.display
        self.query_one("#runs-table").set_class(not panes.display, "-zoomed")

    def action_pane(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane

    def action_pin(self) -> None:
        if self.pinned is not None and (self.selected is None or self.pinned.run_id == self.selected):
            self.pinned = None
            self.notify("unpinned")
        elif self.selected:
            self.pinned = RunView(self.app.store, self.selected)
            self.notify(f"pinned {self.selected}: its curves overlay the other runs'")
        self._drawn_version = -1
        self._draw_list_line(len(self.rows), len(self.shown))
        self.call_later(self._poll_selected)

    # -- run management ----------------------------------------------------------------------------------
    def _target(self, allowed: tuple[str, ...], verb: str) -> str | None:
        rid = self.selected
        if rid is None or rid not in self.rows:
            self.notify("no run selected", severity="warning")
            return None
        state = self.rows[rid].state
        if state not in allowed:
            self.notify(f"{rid} is {state}: nothing to {verb}", severity="warning")
            return None
        return rid

    def action_stop_run(self) -> None:
        rid = self._target((RUNNING, QUEUED), "stop")
        if rid is None:
            return

        def done(answer: str | None) -> None:
            if answer == "y":
                self.post_message(StopRequested(rid))

        details = "It stops within a few seconds; its last finished epoch stays resumable (r)."
        self.app.push_screen(ConfirmScreen(f"Stop {rid}?", details), done)

    def action_retry_run(self) -> None:
        rid = self._target((FAILED, STOPPED), "retry")
        if rid is not None:
            self.post_message(RetryRequested(rid))

    def action_remove_run(self) -> None:
        rid = self._target((FINISHED, FAILED, STOPPED, QUEUED, "damaged"), "delete")
        if rid is None:
            return

        def done(answer: str | None) -> None:
            if answer in ("d", "a"):
                self.post_message(RemoveRequested(rid, archive=answer == "a"))

        self.app.push_screen(ConfirmScreen(f"Delete or archive {rid}?", api.what_goes(self.app.store, rid),
                                           {"d": "delete", "a": "archive"}), done)

    def action_start_worker(self) -> None:
        def done(choice: tuple[str, str] | None) -> None:
            if choice:
                self.post_message(WorkerRequested(*choice))

        self.app.push_screen(WorkerScreen(gpu_count()), done)
