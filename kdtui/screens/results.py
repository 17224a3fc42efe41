"""Results: the thesis's comparative tables with baselines and gains, for all runs or for one study;
CSV export writes the same files as `kdengine table` / `kdengine study table`.

The tables are built in a worker thread (the first build reads every run and imports pandas: seconds on a busy
machine) and come back as a message; the screen shows at once and says that they are coming."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from kdengine.api import Choices, Summary, Tables

from ..messages import ExportRequested
from . import register_screen

ALL = "all runs"
POLL_S = 2.0
SWEEP = "sweep"  # one tab for a sweep's tables: `a` chooses the axis
EMPTY = {"robustness": "No run of this kind has been evaluated under acquisition shift yet: kdengine shift STUDY "
                       "(or a study's [shift]) fills it.",
         "students": "No finished run of this strategy yet.",
         "sweep": "No finished student with a value on this axis yet."}


def fmt(value, column: str, intervals: bool = False, higher_better: bool = True):
    if value is None:
        return Text("–", style="dim")
    gain = column.startswith("gain")
    if isinstance(value, Summary):  # as every front end writes it: n as seeds×images, and its family's mark
        text = Text(value.text(gain, intervals))
        if gain:
            good = value.mean > 0 if higher_better else value.mean < 0
            bad = value.mean < 0 if higher_better else value.mean > 0
            text.stylize("green" if good else "red" if bad else "")
        return text
    return str(value)




NOTE_LINES = 3


class TablesRead(Message):
    """The tables of a view, built off the UI thread (``tables`` None: nothing finished since the last build), and
    the views there are (all runs, each study)."""

    def __init__(self, signature: tuple, tables: Tables | None, views: list[str],
                 error: Exception | None = None) -> None:
        super().__init__()
        self.signature = signature
        self.tables = tables
        self.views = views
        self.error = error


@register_screen("results", "3", "Results", "The comparative accuracy tables")
class ResultsScreen(Screen):
    BINDINGS = [
        Binding("[", "cycle(-1)", "Prev"),
        Binding("]", "cycle(1)", "Next"),
        Binding("v", "next_view", "Study"),
        Binding("i", "toggle_intervals", "CI"),
        Binding("m", "next_metric", "Metric"),
        Binding("a", "next_axis", "Axis"),
        Binding("e", "export", "Export"),
        Binding("h", "report", "Report"),
        Binding("p", "plan", "Plan seeds"),
        Binding("n", "toggle_notes", "Notes", show=False),
        Binding("t", "next_threshold", "Threshold", show=False),
    ]
    HELP = [
        ("[ ]", "previous · next table"),
        ("← →", "scroll a wide table"),
        ("v", "all runs · each study"),
        ("m", "metric: " + " · ".join(label for label, _, _ in Choices.METRICS.values())),
        ("i", "show the 95% intervals"),
        ("a", "a sweep: the next axis (then the best combination)"),
        ("n", "the notes under the table in full · folded"),
        ("t", "sensitivity and specificity: the threshold rule on val, " + " · ".join(Choices.THRESHOLDS)),
        ("e h", "export the tables (CSV and Markdown) · the HTML report"),
        ("p", "plan seeds: how many a gain needs at 80% power (one study)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view_name = ALL
        self.metric = "accuracy"
        self.metric_chosen = False  # until m is pressed, the metric follows the runs' tasks (Tables.usual_metric)
        self.threshold = Choices.THRESHOLDS[0]  # sensitivity's and specificity's rule (t): as the runs chose
        self.tables = None
        self.order: list[str] = []
        self.current: str | None = None
        self.intervals = False
        self.axis = 0  # which of a sweep's tables the sweep tab shows
        self.notes_open = False  # the notes under the table in full (n), else folded to NOTE_LINES
        self.known_views: list[str] = [ALL]  # all runs, and each study (as last read)
        self.building = False  # a build under way
        self._signature: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="strategy-bar")
        # a cell cursor: left/right scroll wide tables (the thesis's has up to 4 teachers + gains)
        # the table as tall as its rows (its horizontal scroll bar right under them, where it reads as one; at the
        # foot of an empty 1fr it looked like a stray mark above the notes), up to the body's height
        with Vertical(id="results-body"):
            yield DataTable(id="results-table", zebra_stripes=True, cursor_type="cell")
        yield Static("", id="results-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#results-note", Static).update(Text("building the tables…", style="bold yellow"))
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)

    def on_screen_resume(self) -> None:
        self.call_after_refresh(self.poll)  # a run that finished meanwhile: its tables now, not at the next tick
        self.query_one(DataTable).focus()

    def poll(self, force: bool = False) -> None:
        """Build the tables again when a run finished (``force``: the view or the metric changed); a tick while a
        build is under way waits for the next."""
        if force or (self.is_current and not self.building):
            self.building = True
            self.load(self.view_name, self.metric, self._signature if not force else None, self.metric_chosen,
                      self.threshold)

    @work(thread=True, group="tables")
    def load(self, view: str, metric: str, last: tuple | None, chosen: bool = True, threshold: str = "") -> None:
        """The tables of all runs, or of one study (the same code as `kdengine table` and `study table`), rebuilt
        only when a run finished or the view or the metric changed; in the metric the runs' tasks are usually read
        by (AUROC for binary and multi-label tasks) until one is ``chosen``; sensitivity and specificity at the
        ``threshold`` rule."""
        store = self.app.store
        try:
            finished = tuple(sorted(store.finished()))
            signature = (view, metric, finished, threshold)
            views = [ALL, *store.studies()]
            tables = None
            if signature != last:  # not chosen: the runs' usual metric, found by the build itself (one build)
                tables = store.tables(None if view == ALL else view, metric if chosen else None, threshold=threshold)
                signature = (view, tables.metric, finished, threshold)
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.post_message(TablesRead((), None, [], exc))
            return
        self.post_message(TablesRead(signature, tables, views))

    def on_tables_read(self, message: TablesRead) -> None:
        self.building = False
        if message.error is not None:
            self.query_one("#results-note", Static).update(Text(f"cannot build the tables: {message.error}",
                                                                style="red"))
            return
        self.known_views = message.views
        if message.tables is not None and not self.metric_chosen and message.signature[0] == self.view_name:
            self.metric = message.signature[1]  # the runs' usual metric
        if message.tables is None or (message.signature[:2], message.signature[3]) != \
                ((self.view_name, self.metric), self.threshold):
            return  # nothing new, or built for a view, metric or rule left meanwhile (its own build follows)
        self._signature = message.signature
        self.tables = tables = message.tables
        self.refresh_bindings()  # `a` comes and goes with a sweep
        self.order = list(dict.fromkeys(SWEEP if t.key.startswith("sweep_") else t.key for t in tables.tables))
        if self.current not in self.order:
            self.current = next((k for k in self.order if k != "models"), None) or (self.order[0] if self.order else None)
        self._draw()

    def _sweeps(self) -> list:
        """A swept view's tables: one per axis, and the best combination when there are several axes."""
        return [t for t in self.tables.tables if t.key.startswith("sweep_")] if self.tables else []

    def _table(self):
        if self.current == SWEEP:
            sweeps = self._sweeps()
            return sweeps[self.axis % len(sweeps)] if sweeps else None
        return next((t for t in self.tables.tables if t.key == self.current), None) if self.tables else None

    def _tab(self, key: str) -> str:
        if key != SWEEP:
            return key
        sweeps = self._sweeps()
        return f"sweep: {sweeps[self.axis % len(sweeps)].axis or 'best of all'} (a)"

    def _bar(self, width: int) -> Text:
        """The tabs, scrolled so that the current one is always on screen: ‹ and › say more lie beyond."""
        label, _, _ = Choices.METRICS[self.metric]
        rule = f" at {self.threshold}" if self.metric in Choices.THRESHOLD_METRICS else ""
        head = Text(f"[{self.view_name} · {label}{rule}] ", style="bold")
        if not self.order:
            return head.append("no finished runs yet: launch some with 2, or `kdengine train`", style="dim")
        names = [f" {self._tab(s)} " for s in self.order]
        at = self.order.index(self.current) if self.current in self.order else 0
        room = max(10, width - len(head) - 14)  # and room for ‹ and › N more
        first = last = at
        used = len(names[at])
        while True:  # widen the window around the current tab while it fits
            grew = False
            if last + 1 < len(names) and used + len(names[last + 1]) <= room:
                last += 1
                used += len(names[last])
                grew = True
            if first > 0 and used + len(names[first - 1]) <= room:
                first -= 1
                used += len(names[first])
                grew = True
            if not grew:
                break
        bar = head.append("‹ " if first > 0 else "  ", style="bold yellow")
        for i in range(first, last + 1):
            bar.append(names[i], style="reverse bold" if i == at else "")
        if last < len(names) - 1:
            bar.append(f" › {len(names) - 1 - last} more", style="bold yellow")
        return bar

    def _draw(self) -> None:
        _, _, higher_better = Choices.METRICS[self.metric]
        self.query_one("#strategy-bar", Static).update(self._bar(self.size.width or self.app.size.width))
        table = self.query_one(DataTable)
        table.clear(columns=True)
        current = self._table()
        notes = []
        if self.tables is not None:
            notes.append(f"{self.tables.finished} of {self.tables.planned} runs finished.")
        if current is not None:
            notes += current.notes
            # → scrolls the numbers; the row labels (the leading text columns) stay
            table.fixed_columns = next((i for i, c in enumerate(current.columns) if not current.is_text(c)),
                                       len(current.columns))
            for col in current.columns:  # as the CLI and the report say them: "gain T=2", "val T=2"
                table.add_column(col, key=col)
            for row in current.rows:
                table.add_row(*[fmt(v, c, self.intervals, higher_better) for v, c in zip(row, current.columns)])
            if not current.rows:
                notes.insert(0, EMPTY.get(current.name.split("_")[0], "no finished run for this table yet."))
        self._notes = " ".join(notes)
        self.query_one("#results-note", Static).update(Text(self._folded_notes(), style="dim"))

    def on_data_table_cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        """The cell under the cursor, in full: n, each seed's value, the raw and adjusted p-value, what its interval
        covers; then the table's notes."""
        current = self._table()
        row, col = event.coordinate.row, event.coordinate.column
        if current is None or row >= len(current.rows) or col >= len(current.columns):
            return
        value = current.rows[row][col]
        note = Text()
        if isinstance(value, Summary):
            note.append(value.detail(current.columns[col]) + "\n", style="bold")
        note.append(self._folded_notes(), style="dim")
        self.query_one("#results-note", Static).update(note)

    def _folded_notes(self) -> str:
        """The table's notes in at most NOTE_LINES lines (at 80 x 24 they took 13 and left 6 rows of table), with
        where the rest is; all of them once ``n`` opens them."""
        text = getattr(self, "_notes", "")
        width = max(20, (self.size.width or self.app.size.width) - 2)
        if self.notes_open or len(text) <= width * NOTE_LINES:
            return text
        cut = text[:width * NOTE_LINES - 24].rsplit(" ", 1)[0]
        return f"{cut} … (n: all notes)"

    def action_toggle_notes(self) -> None:
        self.notes_open = not self.notes_open
        self.query_one("#results-note", Static).update(Text(self._folded_notes(), style="dim"))

    def action_cycle(self, step: int) -> None:
        if not self.order:
            return
        i = (self.order.index(self.current) + step) % len(self.order) if self.current in self.order else 0
        self.current = self.order[i]
        self._draw()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """`a` (the sweep's axis) is there only where a sweep is."""
        return bool(self._sweeps()) if action == "next_axis" else True

    def action_next_axis(self) -> None:
        """The sweep tab's next axis (and, with several axes, the best combination of all)."""
        sweeps = self._sweeps()
        if not sweeps:
            self.notify("no sweep here: a study with a list as a setting (kd.temperature = [1, 4]) has axes",
                        severity="warning")
            return
        if self.current == SWEEP and len(sweeps) == 1:
            self.notify("this sweep has one axis: the sweep tab shows it all", severity="information")
        elif self.current == SWEEP:
            self.axis = (self.axis + 1) % len(sweeps)
        self.current = SWEEP
        self._draw()

    def action_next_threshold(self) -> None:
        """Sensitivity's and specificity's thresholds chosen on val by the next rule: read again from the stored
        predictions (``kdengine table --threshold``), nothing retrained."""
        if self.metric not in Choices.THRESHOLD_METRICS:
            self.notify("the threshold rule is sensitivity's and specificity's: m chooses the metric",
                        severity="warning")
            return
        rules = Choices.THRESHOLDS
        self.threshold = rules[(rules.index(self.threshold) + 1) % len(rules)] if self.threshold in rules else rules[0]
        self.query_one("#strategy-bar", Static).update(self._bar(self.size.width))
        self.poll(force=True)

    def action_toggle_intervals(self) -> None:
        if self.tables is not None and self.tables.one_seed:
            self.notify("one seed per cell: no interval can be given; run more seeds", severity="warning")
            return
        self.intervals = not self.intervals
        self._draw()

    def action_next_view(self) -> None:
        views = self.known_views
        i = (views.index(self.view_name) + 1) % len(views) if self.view_name in views else 0
        self.view_name = views[i]
        self.current = None  # no toast: the bar above the table names the view, and a toast hid the notes' end
        self.poll(force=True)

    def action_next_metric(self) -> None:
        names = list(Choices.METRICS)
        self.metric = names[(names.index(self.metric) + 1) % len(names)]
        self.metric_chosen = True
        self.poll(force=True)

    def action_export(self) -> None:
        self.post_message(ExportRequested(None if self.view_name == ALL else self.view_name, self.metric,
                                          threshold=self.threshold))

    def action_plan(self) -> None:
        """The seed planner for the study shown (the same as `kdengine study plan NAME --detect GAIN`)."""
        if self.view_name == ALL:
            self.notify("choose a study first (v): a plan is for one study's pilot", severity="warning")
            return
        from .plan import PlanScreen  # the planner's dialog: loaded when first asked for

        self.app.push_screen(PlanScreen(self.view_name))

    def action_report(self) -> None:
        self.post_message(ExportRequested(None if self.view_name == ALL else self.view_name, self.metric, report=True,
                                          threshold=self.threshold))
