"""The run list: a hundred runs in fixed-width columns that appear as the terminal widens, filtered by any words,
sorted, grouped by study. It owns its rows, its order, its filter and its selection; it reads the store in a worker
thread (``load``), says which run is selected by posting :class:`RunList.Selected` (``None``: no run is shown) and
that what it shows changed by :class:`RunList.Changed` (its line, ``line()``, says how many and how sorted)."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from kdengine.api import RunRow, State

from ..store_view import SORTS, STATE_ICONS, arrange, done_cell, epoch_cell, eta_cell, groups, state_word, \
    study_of, what_cell, who

STATE_STYLE = {State.RUNNING: "bold green", State.FINISHED: "cyan", State.FAILED: "bold red",
               State.STOPPED: "yellow", State.QUEUED: "dim", "damaged": "bold magenta"}
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


class RunList(DataTable):
    """The table of runs. Home and End move to the first and the last run (DataTable's own scroll sideways)."""

    BINDINGS = [Binding("home", "first", "First", show=False), Binding("end", "last", "Last", show=False)]

    class Selected(Message):
        """The run the list selects now (its row), or None when it shows none (``total``: the runs it holds)."""

        def __init__(self, row: RunRow | None, total: int) -> None:
            super().__init__()
            self.row = row
            self.total = total

    class Changed(Message):
        """What the list shows changed (its line says it anew)."""

    class Loaded(Message):
        """The store's rows, read in a worker thread, and whether a worker serves the store."""

        def __init__(self, rows: list[RunRow] | None, workers_alive: bool, error: Exception | None = None) -> None:
            super().__init__()
            self.rows = rows
            self.workers_alive = workers_alive
            self.error = error

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.runs: dict[str, RunRow] = {}  # (DataTable's own rows are its cells)
        self.shown: list[str] = []  # the table's row keys, in order (run ids, and group headers)
        self.selected: str | None = None
        self.pending: str | None = None  # a run to select once it is in the table (just launched)
        self.loaded = False
        self.reading = False  # a read under way
        self.error: Exception | None = None  # the last read's, when it failed
        self.workers_alive = True
        self.query_text = ""
        self.sort_key = "created"
        self.reverse = False
        self.by_study = False
        self.pinned: str | None = None  # said in the list's line
        self.columns_shown: tuple[Column, ...] = ()

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    # -- reading the store ---------------------------------------------------------------------------------------
    def refresh_rows(self) -> None:
        """Read the rows again, unless a read is still under way (the next tick reads again)."""
        if not self.reading:
            self.reading = True
            self.load()

    @work(thread=True, group="run-list")
    def load(self) -> None:
        """Every run's row (and whether a worker serves the store), read off the UI thread."""
        store = self.app.store
        try:
            self.post_message(self.Loaded(store.rows(), bool(store.workers())))
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.post_message(self.Loaded(None, self.workers_alive, exc))

    def on_run_list_loaded(self, message: Loaded) -> None:
        message.stop()
        self.reading = False
        self.error = message.error
        if message.error is not None:
            self.post_message(self.Changed())
            return
        self.loaded = True
        self.workers_alive = message.workers_alive
        self.show_rows(message.rows)

    # -- the table -------------------------------------------------------------------------------------------------
    def set_width(self, width: int) -> None:
        """The columns this width shows; the table is rebuilt when they change."""
        wanted = self._wanted_columns(width)
        if wanted == self.columns_shown:
            return
        self.columns_shown = wanted
        self.clear(columns=True)
        for c in wanted:
            self.add_column(c.label, key=c.key, width=c.width)
        self.shown = []
        if self.runs:
            self.show_rows(list(self.runs.values()))

    def _wanted_columns(self, width: int) -> tuple[Column, ...]:
        """The columns a width shows; grouped or sorted by study on a narrow terminal, the study column replaces
        the seed and shortens who."""
        study = self.by_study or self.sort_key == "study"
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

    def _cell(self, r: RunRow, key: str, width: int):
        style = STATE_STYLE.get(state_word(r), "")
        value = {"state": Text(STATE_ICONS.get(state_word(r), "?"), style=style),
                 "what": Text(what_cell(r, width), style=style),
                 "who": who(r), "seed": str(r.seed if r.seed is not None else -1), "study": study_of(r),
                 "device": r.device, "epoch": epoch_cell(r),
                 "done": done_cell(r), "best": f"{r.best_val:.4f}" if r.best_val is not None else "",
                 "test": f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "",
                 "gain": Text(f"{r.gain:+.4f}", style="green" if r.gain > 0 else "red" if r.gain < 0 else "")
                 if r.gain is not None else "", "eta": eta_cell(r), "run_id": r.run_id}[key]
        if isinstance(value, str) and len(value) > width:  # fixed widths: cut with a mark, never shift
            value = value[:width - 1] + "…"
        return value

    def _cells(self, r: RunRow) -> list:
        return [self._cell(r, c.key, c.width) for c in self.columns_shown]

    def _header_cells(self, study: str, rows: list[RunRow]) -> list:
        label = Text(f"▸ {study} ({len(rows)})", style="bold")
        return [label if c.key == "who" else "" for c in self.columns_shown]

    def show_rows(self, rows: list[RunRow]) -> None:
        """Show ``rows`` as the filter, the sort and the grouping ask; say the selected run (or none)."""
        previous = dict(self.runs)
        self.runs = {r.run_id: r for r in rows}
        shown = arrange(rows, self.query_text, self.sort_key, self.by_study, self.reverse)
        if self.by_study:
            layout = [(f"{GROUP}{study}", members) for study, members in groups(shown)]
            order = [k for key, members in layout for k in [key, *(r.run_id for r in members)]]
        else:
            order = [r.run_id for r in shown]
        keep = self.pending or self.selected
        if order != self.shown:  # the set or the order changed: rebuild (cheap for hundreds of rows)
            self.clear()
            if self.by_study:
                for key, members in layout:
                    self.add_row(*self._header_cells(key.removeprefix(GROUP), members), key=key)
                    for r in members:
                        self.add_row(*self._cells(r), key=r.run_id)
            else:
                for r in shown:
                    self.add_row(*self._cells(r), key=r.run_id)
            self.shown = order
            if keep in order:
                self.move_cursor(row=order.index(keep), animate=False)
        else:
            for r in shown:
                old = previous.get(r.run_id)
                if old != r:
                    for c, value, before in zip(self.columns_shown, self._cells(r), self._cells(old) if old else []):
                        if value != before:  # fixed widths: updating a cell never needs a layout pass
                            self.update_cell(r.run_id, c.key, value)
        if self.pending in order:
            self.pending = None
        runs = [k for k in order if not k.startswith(GROUP)]
        if not runs:
            self._choose(None, len(rows))
        elif self.selected not in runs:
            at = order[self.cursor_row] if 0 <= self.cursor_row < len(order) else runs[0]
            self._choose(at if not at.startswith(GROUP) else runs[0], len(rows))
        elif previous.get(self.selected) != self.runs.get(self.selected):  # its row changed: say it again
            self.post_message(self.Selected(self.runs[self.selected], len(rows)))
        self.post_message(self.Changed())

    def _choose(self, run_id: str | None, total: int) -> None:
        if run_id == self.selected and run_id is not None:
            return
        self.selected = run_id
        self.post_message(self.Selected(self.runs.get(run_id) if run_id else None, total))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and not key.startswith(GROUP) and key != self.selected and key in self.runs:
            self._choose(key, len(self.runs))  # a study's header: the detail keeps its run

    def select_run(self, run_id: str) -> None:
        """Select (and move the cursor to) a run, e.g. one just launched; if the list does not hold it yet, the
        next read selects it."""
        if run_id in self.shown:
            self.move_cursor(row=self.shown.index(run_id))
            self._choose(run_id, len(self.runs))
        else:
            self.pending = run_id

    def line(self) -> Text:
        """The list in a line: how many runs it shows of how many, running and queued, its order and filter."""
        if self.error is not None:
            return Text(f"cannot read the run store: {self.error}", style="red")
        if not self.loaded:
            return Text("reading the run store…", style="dim")
        total, shown = len(self.runs), len(self.shown_runs())
        running = sum(r.state == State.RUNNING for r in self.runs.values())
        queued = sum(r.state == State.QUEUED for r in self.runs.values())
        line = Text(f"{shown} of {total} runs · {running} running · {queued} queued", style="bold")
        line.append(f" · sort {self.sort_key}{' ↓' if self.reverse else ''}" + (" · by study" if self.by_study else ""),
                    style="dim")
        if self.query_text:
            line.append(f" · filter “{self.query_text}”", style="yellow")
        if self.pinned is not None:
            line.append(f" · pinned {self.pinned[:28]}", style="magenta")
        return line

    def running(self) -> int:
        return sum(r.state == State.RUNNING for r in self.runs.values())

    # -- filter, sort, group, jump ---------------------------------------------------------------------------------
    def filter(self, text: str) -> None:
        """Show the runs that match every word of ``text``."""
        self.query_text = text.strip()
        self.show_rows(list(self.runs.values()))

    def next_sort(self, step: int) -> None:
        if step < 0:
            self.reverse = not self.reverse
        else:
            self.sort_key = SORTS[(SORTS.index(self.sort_key) + 1) % len(SORTS)]
        self.set_width(self.app.size.width)  # sorted by study: the study column shows
        self.show_rows(list(self.runs.values()))

    def toggle_groups(self) -> None:
        self.by_study = not self.by_study
        self.set_width(self.app.size.width)
        self.shown = []
        self.show_rows(list(self.runs.values()))

    def next_running(self) -> None:
        running = [i for i, rid in enumerate(self.shown) if rid in self.runs and self.runs[rid].state == State.RUNNING]
        if not running:
            self.notify("no run is running", severity="warning")
            return
        self.move_cursor(row=next((i for i in running if i > self.cursor_row), running[0]))

    def shown_runs(self) -> list[str]:
        return [k for k in self.shown if not k.startswith(GROUP)]
