"""The monitor: the runs list (a hundred runs: it fills the height, filters, sorts, groups by study), and the
selected run's curves (overlaid with its teachers', its baseline's and a pinned run's), confusion matrix and
report. Stopping asks first; retry, delete and the worker dialog are one key each."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from kdengine import api
from kdengine.errors import KDError
from kdengine.api import gpu_count
from kdengine.api import FAILED, FINISHED, QUEUED, RUNNING, STOPPED

from ..messages import RemoveRequested, RetryRequested, StopRequested, WorkerRequested
from ..store_view import SORTS, STATE_ICONS, RunRow, RunView, arrange, groups, load_rows
from ..widgets.confusion import ConfusionPane, ReportPane
from ..widgets.curves import CurvesPane
from ..widgets.looks import LooksPane
from .dialogs import ConfirmScreen, WorkerScreen

POLL_S = 1.0
SHORT_SCREEN_ROWS = 32
STATE_STYLE = {RUNNING: "bold green", FINISHED: "cyan", FAILED: "bold red", STOPPED: "yellow",
               QUEUED: "dim", "damaged": "bold magenta"}
GROUP = "group:"  # the key prefix of a study's header row (grouped by study)


@dataclass(frozen=True)
class Column:
    label: str
    key: str
    width: int
    min_screen: int = 0  # shown from this many columns of terminal on (a fixed width: nothing shifts)


# Fixed widths, so that a cell that grows (a phase, a long name) never shifts the others; columns appear as the
# terminal widens. At 80 columns the list uses 78.
COLUMNS = (Column("st", "state", 2), Column("what", "what", 12), Column("teacher → student", "who", 23),
           Column("seed", "seed", 4), Column("study", "study", 12, 110), Column("device", "device", 6, 120),
           Column("epoch", "epoch", 5), Column("done", "done", 5), Column("val", "best", 6),
           Column("test", "test", 6, 100), Column("gain", "gain", 7, 100), Column("ETA", "eta", 6),
           Column("run", "run_id", 32, 170))
NARROW_STUDY = 10
SHORT = {"teacher+baseline": "teacher/base"}  # the list's words where the column is narrow (Details says it all)


@lru_cache(maxsize=1)
def local_gpus() -> int:
    """The GPUs this machine has (nvidia-smi, asked once: the run line is drawn often)."""
    return gpu_count()


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

    def _wanted_columns(self, width: int) -> tuple[Column, ...]:
        """The columns a width shows; grouped or sorted by study on a narrow terminal, the study column replaces
        the seed and shortens who."""
        study = self.by_study or self.sort == "study"
        cols = []
        for c in COLUMNS:
            if c.key == "study" and study and width < c.min_screen:
                cols.append(Column(c.label, c.key, NARROW_STUDY))
            elif c.key == "seed" and study and width < 110:
                continue
            elif c.key == "who" and study and width < 110:
                cols.append(Column(c.label, c.key, c.width - NARROW_STUDY + 2))
            elif width >= c.min_screen:
                cols.append(c)
        return tuple(cols)

    def _set_columns(self, width: int) -> None:
        """The columns this width shows; the table is rebuilt when they change."""
        wanted = self._wanted_columns(width)
        if wanted == self.columns:
            return
        self.columns = wanted
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for c in wanted:
            table.add_column(c.label, key=c.key, width=c.width)
        self.shown = []
        if self.rows:
            self._update_table(list(self.rows.values()))

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

    def _cell(self, r: RunRow, key: str, width: int):
        style = STATE_STYLE.get(r.state, "")
        value = {"state": Text(STATE_ICONS.get(r.state, "?"), style=style),
                 "what": Text(SHORT.get(r.strategy, r.strategy)[:width], style=style),
                 "who": r.who, "seed": str(r.seed), "study": r.study, "device": r.device, "epoch": r.epoch,
                 "done": r.done, "best": f"{r.best_val:.4f}" if r.best_val is not None else "",
                 "test": f"{r.test_acc:.4f}" if r.test_acc is not None else "",
                 "gain": Text(f"{r.gain:+.4f}", style="green" if r.gain > 0 else "red" if r.gain < 0 else "")
                 if r.gain is not None else "", "eta": r.eta, "run_id": r.run_id}[key]
        if isinstance(value, str) and len(value) > width:  # fixed widths: cut with a mark, never shift
            value = value[:width - 1] + "…"
        return value

    def _cells(self, r: RunRow) -> list:
        return [self._cell(r, c.key, c.width) for c in self.columns]

    def _header_cells(self, study: str, rows: list[RunRow]) -> list:
        label = Text(f"▸ {study} ({len(rows)})", style="bold")
        return [label if c.key == "who" else "" for c in self.columns]

    def _update_table(self, rows: list[RunRow]) -> None:
        table = self.query_one(DataTable)
        previous = dict(self.rows)
        self.rows = {r.run_id: r for r in rows}
        shown = arrange(rows, self.query_text, self.sort, self.by_study, self.reverse)
        if self.by_study:
            layout = [(f"{GROUP}{study}", None, members) for study, members in groups(shown)]
            order = [k for key, _, members in layout for k in [key, *(r.run_id for r in members)]]
        else:
            order = [r.run_id for r in shown]
        keep = self.pending or self.selected
        if order != self.shown:  # the set or the order changed: rebuild (cheap for hundreds of rows)
            table.clear()
            if self.by_study:
                for key, _, members in layout:
                    table.add_row(*self._header_cells(key.removeprefix(GROUP), members), key=key)
                    for r in members:
                        table.add_row(*self._cells(r), key=r.run_id)
            else:
                for r in shown:
                    table.add_row(*self._cells(r), key=r.run_id)
            self.shown = order
            if keep in order:
                table.move_cursor(row=order.index(keep), animate=False)
        else:
            for r in shown:
                old = previous.get(r.run_id)
                if old != r:
                    for c, value, before in zip(self.columns, self._cells(r), self._cells(old) if old else []):
                        if value != before:  # fixed widths: updating a cell never needs a layout pass
                            table.update_cell(r.run_id, c.key, value)
        if self.pending in order:
            self.pending = None
        runs = [k for k in order if not k.startswith(GROUP)]
        if not runs:
            self._clear_selection(len(rows))
        elif self.selected not in runs:
            at = order[table.cursor_row] if 0 <= table.cursor_row < len(order) else runs[0]
            self._select(at if not at.startswith(GROUP) else runs[0])
        self._draw_list_line(len(rows), len(shown))
        if not rows:
            self.query_one("#run-line", Static).update(
                Text("No runs yet: press 2 to launch one, or run `kdengine train` in a shell.", style="dim"))

    def _clear_selection(self, total: int) -> None:
        """Nothing shown (a filter matches nothing, the last shown run was deleted): no stale detail."""
        if self.selected is None and self.view is None:
            return
        self.selected, self.view, self.overlay_views = None, None, []
        self.query_one(CurvesPane).show(None, [], "", key="")
        self.query_one(ConfusionPane).show(None, [], "")
        self.query_one(ReportPane).show(None, "")
        self.query_one("#details-pane", Static).update("")
        self.query_one(LooksPane).update("")
        if total:
            self.query_one("#run-line", Static).update(Text("No run matches the filter (esc clears it).", style="dim"))

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
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and key.startswith(GROUP):  # a study's header: the detail keeps its run
            return
        if key is not None and key != self.selected:
            self._select(key)
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
            if row.state == QUEUED and row.device == "cuda" and not local_gpus():
                line.append("  queued for CUDA: no GPU here, a CUDA worker on another machine takes it",
                            style="bold yellow")
            elif row.state == QUEUED and not self.workers_alive:
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
        elif active == "details":
            self._draw_details(view)
        elif active == "looks":
            self._draw_looks(view)
        else:
            self._draw_report(view)

    def _draw_looks(self, view: RunView) -> None:
        height = self.query_one("#panes").size.height - 2
        self.query_one(LooksPane).show(self.app.store, view.run_id, view.spec, self.look_index, max(6, height))

    def action_look(self, step: int) -> None:
        """The Looks pane's next (l again) or previous (L) image."""
        self.look_index += step
        tabs = self.query_one(TabbedContent)
        if tabs.active != "looks":
            tabs.active = "looks"
        elif self.view is not None:
            self._draw_looks(self.view)

    def _draw_details(self, view: RunView) -> None:
        """What the run is: its data (synthetic or not), settings, teachers, baseline and gain (as `runs show`)."""
        row = self.rows.get(view.run_id)
        lines = [Text(view.run_id, style="bold")]
        if row is not None:
            lines.append(Text(f"{row.strategy} · {row.state}" + (f" · {row.reason}" if row.reason else "")))
        for fact in api.run_facts(self.app.store, view.run_id):
            style = "yellow" if "SYNTHETIC" in fact else ""
            lines.append(Text(fact, style=style))
        self.query_one("#details-pane", Static).update(Text("\n").join(lines))

    def _draw_curves(self, view: RunView) -> None:
        overlays = [(label, v.curves) for label, v in self.overlay_views]
        if self.pinned is not None and self.pinned.run_id != view.run_id:
            overlays.append((f"≈ {self.pinned.model}", self.pinned.curves))
        row = self.rows.get(view.run_id)
        role = row.strategy if row is not None else ("student" if view.spec and view.spec.kind == "kd" else "run")
        pinned = self.pinned.run_id if self.pinned is not None else ""
        self.query_one(CurvesPane).show(view.curves, overlays, f"{role} {view.model}", key=f"{view.run_id}|{pinned}")

    def _draw_report(self, view: RunView) -> None:
        """The classification report of one split (p again: test, val, train); before the end, val's latest."""
        summary, split = "", self.report_split
        if view.metrics:
            t = view.metrics[split]
            summary = (f"{split}: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, kappa {t['kappa']:.4f}, "
                       f"ECE {t['ece']:.4f}" + (f", agreement {t['agreement']:.4f}" if "agreement" in t else ""))
            report, title = view.metrics[split]["report"], f"classification report ({split}; p: next split)"
        else:
            report, title = view.report(), "classification report (val, latest epoch)"
        self.query_one(ReportPane).show(report, title, summary)

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
        self._set_columns(self.app.size.width)  # sorted by study: the study column shows
        self._update_table(list(self.rows.values()))

    def action_group(self) -> None:
        self.by_study = not self.by_study
        self._set_columns(self.app.size.width)
        self.shown = []
        self._update_table(list(self.rows.values()))

    def action_next_running(self) -> None:
        running = [i for i, rid in enumerate(self.shown) if rid in self.rows and self.rows[rid].state == RUNNING]
        if not running:
            self.notify("no run is running", severity="warning")
            return
        table = self.query_one(DataTable)
        nxt = next((i for i in running if i > table.cursor_row), running[0])
        table.move_cursor(row=nxt)

    def on_resize(self, event: events.Resize) -> None:
        # Below 32 rows an even split leaves the curves two rows of plot: give the panes two thirds.
        self.query_one("#panes").set_class(event.size.height < SHORT_SCREEN_ROWS, "-short-screen")
        self._set_columns(event.size.width)

    def action_zoom(self) -> None:
        panes = self.query_one("#panes")
        panes.display = not panes.display
        self.query_one("#run-line").display = panes.display
        self.query_one("#runs-table").set_class(not panes.display, "-zoomed")

    def action_pane(self, pane: str) -> None:
        tabs = self.query_one(TabbedContent)
        if pane == "report" and tabs.active == "report":  # p again: the next split
            order = ("test", "val", "train")
            self.report_split = order[(order.index(self.report_split) + 1) % len(order)]
            if self.view is not None:
                self._draw_report(self.view)
            return
        if pane == "looks" and tabs.active == "looks":  # l again: the next image
            self.action_look(1)
            return
        tabs.active = pane

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
    def _target(self, action: str) -> str | None:
        """The selected run, if ``action`` may be done to it (store.actions decides, as for the CLI)."""
        rid = self.selected
        if rid is None or rid not in self.rows:
            self.notify("no run selected", severity="warning")
            return None
        row = self.rows[rid]
        why = api.why_not(action, row.state, row.reason if row.state == api.DAMAGED else None)
        if why is not None:
            self.notify(f"{rid} is {why}", severity="warning")
            return None
        return rid

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
        if rid is not None:
            self.post_message(RetryRequested(rid))

    def action_remove_run(self) -> None:
        rid = self._target("delete")
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

    def action_act_on_shown(self) -> None:
        """Stop, retry, delete or archive every run the list shows (a filter, a study, a state): asks first."""
        ids = [k for k in self.shown if not k.startswith(GROUP)]
        if not ids:
            self.notify("no run is shown", severity="warning")
            return
        what = f"the {len(ids)} run(s) shown" + (f" (filter “{self.query_text}”)" if self.query_text else "")

        def done(answer: str | None) -> None:
            if answer is None:
                return
            store, counts = self.app.store, 0
            action = {"s": "stop", "r": "retry", "d": "delete", "a": "archive"}[answer]
            batch = api.plan_action(store, ids, action)  # the CLI's batch rule: what applies, the rest skipped
            skipped = len(batch.skipped)
            for rid in batch.apply:
                try:
                    if action == "stop":
                        api.stop(store, rid)
                    elif action == "retry":
                        api.retry(store, rid)
                    else:
                        api.remove(store, rid, archive=action == "archive")
                    counts += 1
                except (KDError, OSError):
                    skipped += 1
            verb = {"s": "stopped", "r": "queued again", "d": "deleted", "a": "archived"}[answer]
            self.notify(f"{verb} {counts} run(s)" + (f"; {skipped} skipped (not in a state for it)" if skipped else ""))

        self.app.push_screen(ConfirmScreen(f"Act on {what}?", "stop: running and queued ones · retry: failed and "
                                           "stopped ones · delete or archive: all but running ones",
                                           {"s": "stop", "r": "retry", "d": "delete", "a": "archive"}), done)
