"""The monitor: the runs list, and the selected run's curves, confusion matrix and report."""
from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from ..messages import StopRequested, WorkerRequested
from ..store_view import STATE_ICONS, RunRow, RunView, load_rows
from ..widgets.confusion import ConfusionPane, ReportPane
from ..widgets.curves import CurvesPane

POLL_S = 1.0
STATE_STYLE = {"running": "bold green", "finished": "cyan", "failed": "bold red", "stopped": "yellow", "queued": "dim"}
COLUMNS = (("st", "state"), ("strategy", "strategy"), ("teacher → student", "who"), ("seed", "seed"),
           ("epoch", "epoch"), ("done", "done"), ("best val", "best"), ("ETA", "eta"))


class RunsScreen(Screen):
    BINDINGS = [
        Binding("s", "stop_run", "Stop run"),
        Binding("w", "start_worker", "Worker"),
        Binding("c", "pane('curves')", "Curves", show=False),
        Binding("m", "pane('confusion')", "Matrix", show=False),
        Binding("p", "pane('report')", "Report", show=False),
        Binding("r", "refresh_now", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, RunRow] = {}
        self.selected: str | None = None
        self.view: RunView | None = None
        self.teacher_views: list[RunView] = []
        self._drawn_version = -1

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
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
        table.focus()
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)

    # -- polling the store ---------------------------------------------------------------------
    async def poll(self) -> None:
        if not self.is_current:  # another mode is on display: nothing to refresh
            return
        try:
            _, rows = await asyncio.to_thread(load_rows, self.app.store)
            self._update_table(rows)
            await self._poll_selected()
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.query_one("#run-line", Static).update(Text(f"cannot read the run store: {exc}", style="red"))

    def _cells(self, r: RunRow) -> list:
        style = STATE_STYLE.get(r.state, "")
        return [Text(STATE_ICONS.get(r.state, "?"), style=style), Text(r.strategy[:10], style=style), r.who[:30],
                str(r.seed), r.epoch, f"{r.progress:4.0%}", f"{r.best_val:.4f}" if r.best_val is not None else "", r.eta]

    def _update_table(self, rows: list[RunRow]) -> None:
        table = self.query_one(DataTable)
        for r in rows:
            cells = self._cells(r)
            if r.run_id not in self.rows:
                table.add_row(*cells, key=r.run_id)
            elif r != self.rows[r.run_id]:
                for (_, key), value in zip(COLUMNS, cells):
                    table.update_cell(r.run_id, key, value, update_width=True)
            self.rows[r.run_id] = r
        if self.selected is None and rows:
            self._select(rows[0].run_id)
        if not rows:
            self.query_one("#run-line", Static).update(
                Text("No runs yet: press 2 to launch one, or run `kdengine train` in a shell.", style="dim"))
        self.sub_title = f"{len(rows)} runs · {sum(r.state == 'running' for r in rows)} running · {self.app.store.root}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value != self.selected:
            self._select(event.row_key.value)
            self.call_later(self._poll_selected)

    def _select(self, run_id: str) -> None:
        self.selected = run_id
        self.view = RunView(self.app.store, run_id)
        self.teacher_views = [RunView(self.app.store, t) for t in self.view.teacher_ids]
        self._drawn_version = -1

    def select_run(self, run_id: str) -> None:
        """Select (and move the cursor to) a run, e.g. one just launched."""
        table = self.query_one(DataTable)
        self._select(run_id)
        try:
            table.move_cursor(row=table.get_row_index(run_id))
        except Exception:  # noqa: BLE001 - not in the table yet; the next poll adds it
            pass

    async def _poll_selected(self) -> None:
        if self.view is None:
            return
        view = self.view
        changed = await asyncio.to_thread(view.poll)
        for tv in self.teacher_views:
            changed |= await asyncio.to_thread(tv.poll)
        if view is self.view and (changed or self._drawn_version != view.version):
            self._drawn_version = view.version
            self._draw(view)

    def _draw(self, view: RunView) -> None:
        row = self.rows.get(view.run_id)
        line = Text(view.run_id, style="bold")
        if row is not None:
            line.append(f"  {row.state}", style=STATE_STYLE.get(row.state, ""))
            if row.reason:
                line.append(f" · {row.reason}", style="red" if row.state == "failed" else "yellow")
        if view.metrics:
            m = view.metrics
            line.append(f"  test acc {m['test']['accuracy']:.4f} · F1 {m['test']['macro_f1']:.4f} · κ {m['test']['kappa']:.3f}")
            if m.get("synthetic"):
                line.append("  [synthetic data]", style="dim")
        for w in view.warnings[-1:]:
            line.append(f"\n{w}", style="yellow")
        self.query_one("#run-line", Static).update(line)
        teachers = [(tv.model, tv.curves) for tv in self.teacher_views]
        self.query_one(CurvesPane).show(view.curves, teachers, view.model)
        self.query_one(ConfusionPane).show(view.confusion, view.class_names, view.confusion_label)
        summary = ""
        if view.metrics:
            t = view.metrics["test"]
            summary = f"test: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, kappa {t['kappa']:.4f}, ECE {t['ece']:.4f}"
            if "agreement" in t:
                summary += f", agreement {t['agreement']:.4f}"
        self.query_one(ReportPane).show(view.report(), "classification report (" + ("test" if view.metrics else "val, latest epoch") + ")", summary)

    # -- actions -----------------------------------------------------------------------------------
    def action_pane(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane

    async def action_refresh_now(self) -> None:
        await self.poll()

    def action_stop_run(self) -> None:
        if not self.selected:
            self.notify("No run selected", severity="warning")
            return
        self.post_message(StopRequested(self.selected))

    def action_start_worker(self) -> None:
        self.post_message(WorkerRequested())
