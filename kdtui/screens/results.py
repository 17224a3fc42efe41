"""Results: the thesis's comparative tables with baselines and gains, for all runs or for one study;
CSV export writes the same files as `kdengine table` / `kdengine study table`."""
from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

ALL = "all runs"
POLL_S = 2.0
PREFERRED = ["teachers", "normal", "reverse", "defective", "tf-self", "tf-reg", "ensemble", "baseline",
             "defective-teacher"]


def fmt(value, column: str, intervals: bool = False):
    from kdengine.reports.stats import Summary

    if value is None:
        return Text("–", style="dim")
    gain = column.startswith("gain")
    if isinstance(value, Summary):
        text = Text(value.fmt(signed=gain, interval=intervals))
        if gain:
            text.stylize("green" if value.mean > 0 else "red" if value.mean < 0 else "")
            if value.excludes_zero:
                text.append(" *", style="bold")
        return text
    if isinstance(value, float):
        if gain:
            return Text(f"{value:+.4f}", style="green" if value > 0 else ("red" if value < 0 else ""))
        return Text(f"{value:.4f}")
    return str(value)


def all_runs_tables(store) -> tuple[dict[str, tuple[list, list]], list[str], bool]:
    from kdengine.reports.collect import collect, tidy_rows
    from kdengine.reports.wide import wide_tables

    rows = tidy_rows(collect(store))
    tables = {k: (v["columns"], v["rows"]) for k, v in wide_tables(rows).items()}
    notes = ["Each student's baseline is the same model trained without a teacher (same data, settings, seed)."]
    return tables, notes, any(r["synthetic"] for r in rows)


def study_tables(store, name: str) -> tuple[dict[str, tuple[list, list]], list[str], bool]:
    from kdengine.reports.study_tables import build
    from kdengine.study.registry import load_study_record

    record = load_study_record(store, name)
    st = build(store, record)
    tables = {"teachers": (st.teachers.columns, st.teachers.rows)}
    notes = [f"study {name}: {st.finished}/{st.planned} runs finished"]
    for strategy, t in st.students.items():
        tables[strategy] = (t.columns, t.rows)
        notes = notes[:1] + t.notes
    synthetic = "synthetic" in str(record.get("config", {}).get("data", {}).get("spec", "synthetic"))
    return tables, notes, synthetic


class ResultsScreen(Screen):
    BINDINGS = [
        Binding("[", "cycle(-1)", "Prev"),
        Binding("]", "cycle(1)", "Next"),
        Binding("v", "next_view", "Study"),
        Binding("i", "toggle_intervals", "CI"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view_name = ALL
        self.tables: dict[str, tuple[list, list]] = {}
        self.order: list[str] = []
        self.current: str | None = None
        self.intervals = False
        self._signature: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="strategy-bar")
        # a cell cursor: left/right scroll wide tables (the thesis's has up to 4 teachers + gains)
        yield DataTable(id="results-table", zebra_stripes=True, cursor_type="cell")
        yield Static("", id="results-note")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)
        self.query_one(DataTable).focus()

    def views(self) -> list[str]:
        from kdengine.study.registry import list_studies

        return [ALL, *list_studies(self.app.store)]

    def _signature_now(self) -> tuple:
        """Changes when a run finishes (or the view changes): only then are tables rebuilt."""
        store = self.app.store
        finished = tuple(sorted(r for r in store.list_ids() if (store.run_dir(r) / "metrics.json").is_file()))
        return (self.view_name, finished)

    async def poll(self, force: bool = False) -> None:
        if not self.is_current and not force:
            return
        try:
            signature = await asyncio.to_thread(self._signature_now)
            if signature == self._signature and not force:
                return
            self._signature = signature
            build = all_runs_tables if self.view_name == ALL else study_tables
            tables, notes, synthetic = await asyncio.to_thread(build, self.app.store, *(
                () if self.view_name == ALL else (self.view_name,)))
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.query_one("#results-note", Static).update(Text(f"cannot build the tables: {exc}", style="red"))
            return
        self.tables = tables
        self.order = [s for s in PREFERRED if s in tables] + [s for s in tables if s not in PREFERRED]
        if self.current not in tables:
            self.current = next((s for s in self.order if s not in ("teachers", "baseline")), None) or \
                (self.order[0] if self.order else None)
        note = " ".join(notes) + (" Includes SYNTHETIC data." if synthetic else "")
        self.query_one("#results-note", Static).update(Text(note, style="dim"))
        self._draw()

    def _draw(self) -> None:
        bar = Text(f"[{self.view_name}] ", style="bold")
        for s in self.order:
            bar.append(f" {s} ", style="reverse bold" if s == self.current else "")
        if not self.order:
            bar.append("no finished runs yet: launch some with 2, or `kdengine train`", style="dim")
        self.query_one("#strategy-bar", Static).update(bar)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if self.current is None:
            return
        columns, rows = self.tables[self.current]
        for col in columns:
            table.add_column(col, key=col)
        for row in rows:
            table.add_row(*[fmt(v, c, self.intervals) for v, c in zip(row, columns)])

    def action_cycle(self, step: int) -> None:
        if not self.order:
            return
        i = (self.order.index(self.current) + step) % len(self.order) if self.current in self.order else 0
        self.current = self.order[i]
        self._draw()

    def action_toggle_intervals(self) -> None:
        self.intervals = not self.intervals
        self._draw()

    async def action_next_view(self) -> None:
        views = self.views()
        i = (views.index(self.view_name) + 1) % len(views) if self.view_name in views else 0
        self.view_name = views[i]
        self.current = None
        self.notify(f"results: {self.view_name}")
        await self.poll(force=True)

    def action_export(self) -> None:
        self.app.action_export(None if self.view_name == ALL else self.view_name)
