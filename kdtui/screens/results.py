"""Results: the thesis's comparative tables, per strategy, with baselines and gains; CSV export."""
from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from kdengine.reports.collect import collect, tidy_rows
from kdengine.reports.wide import wide_tables

POLL_S = 2.0


def fmt(value, column: str):
    if value is None:
        return Text("–", style="dim")
    if isinstance(value, float):
        if column.startswith("gain"):
            return Text(f"{value:+.4f}", style="green" if value > 0 else ("red" if value < 0 else ""))
        return Text(f"{value:.4f}")
    return str(value)


class ResultsScreen(Screen):
    BINDINGS = [
        Binding("left", "cycle(-1)", "Prev"),
        Binding("right", "cycle(1)", "Next"),
        Binding("[", "cycle(-1)", "Prev", show=False),
        Binding("]", "cycle(1)", "Next", show=False),
        Binding("e", "export", "Export"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.order: list[str] = []
        self.current: str | None = None
        self._finished_key: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="strategy-bar")
        yield DataTable(id="results-table", zebra_stripes=True, cursor_type="row")
        yield Static("", id="results-note")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)
        self.query_one(DataTable).focus()

    async def poll(self) -> None:
        try:
            records = await asyncio.to_thread(collect, self.app.store)
        except Exception as exc:  # noqa: BLE001
            self.query_one("#results-note", Static).update(Text(f"cannot read the run store: {exc}", style="red"))
            return
        key = tuple(sorted(r.run_id for r in records if r.state == "finished"))
        if key == self._finished_key and self.tables:
            return
        self._finished_key = key
        rows = tidy_rows(records)
        self.tables = wide_tables(rows)
        preferred = ["normal", "reverse", "defective", "tf-self", "tf-reg", "ensemble", "baseline", "defective-teacher"]
        self.order = [s for s in preferred if s in self.tables] + [s for s in self.tables if s not in preferred]
        if self.current not in self.tables:
            self.current = self.order[0] if self.order else None
        synthetic = any(r["synthetic"] for r in rows)
        note = "Each student's baseline is the same model trained without a teacher (same data, settings and seed)."
        if synthetic:
            note += " Includes SYNTHETIC data."
        self.query_one("#results-note", Static).update(Text(note, style="dim"))
        self._draw()

    def _draw(self) -> None:
        bar = Text()
        for s in self.order:
            bar.append(f" {s} ", style="reverse bold" if s == self.current else "")
        if not self.order:
            bar = Text("No finished runs yet: launch some with 2, or `kdengine train`.", style="dim")
        self.query_one("#strategy-bar", Static).update(bar)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if self.current is None:
            return
        t = self.tables[self.current]
        for col in t["columns"]:
            table.add_column(col, key=col)
        for row in t["rows"]:
            table.add_row(*[fmt(v, c) for v, c in zip(row, t["columns"])])

    def action_cycle(self, step: int) -> None:
        if not self.order:
            return
        i = (self.order.index(self.current) + step) % len(self.order) if self.current in self.order else 0
        self.current = self.order[i]
        self._draw()

    def action_export(self) -> None:
        self.app.action_export()
