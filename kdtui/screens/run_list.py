"""The Runs screen's list: a hundred runs in fixed-width columns that appear as the terminal widens, filtered by any
words, sorted, grouped by study (a mixin of :class:`~kdtui.screens.runs.RunsScreen`: the same widgets, its code
by what it shows)."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from kdengine.api import FAILED, FINISHED, QUEUED, RUNNING, STOPPED

from ..store_view import (SORTS, STATE_ICONS, RunRow, arrange, done_cell, epoch_cell, eta_cell, groups, state_word,
                          what_cell,
                          study_of, who)
from ..widgets.confusion import ConfusionPane, ReportPane
from ..widgets.curves import CurvesPane
from ..widgets.looks import LooksPane

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


class RunsTable(DataTable):
    """Home and End move to the first and the last run (DataTable's own scroll sideways)."""

    BINDINGS = [Binding("home", "first", "First", show=False), Binding("end", "last", "Last", show=False)]

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class RunListMixin:
    """The list's columns, cells, filter, sort and grouping."""

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
