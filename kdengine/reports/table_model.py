"""What a comparison table is (no torch, no pandas at import): the metrics, a table of Summary cells over seeds,
the set of tables one build makes, and how a cell is written; every table module builds on these."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stats import Summary

# metric -> (label, range, higher is better)
METRICS = {
    "accuracy": ("accuracy", (0.0, 1.0), True),
    "macro_f1": ("macro-F1", (0.0, 1.0), True),
    "kappa": ("Cohen's κ", (-1.0, 1.0), True),
    "ece": ("ECE", (0.0, 1.0), False),
    "shift_mean": ("accuracy under shift", (0.0, 1.0), True),  # test split, mean over shifts and severities
}
TEXT_COLUMNS = ("settings", "model", "student", "regime", "role", "split", "threshold reached", "n", "what", "teacher")


@dataclass
class Table:
    name: str  # file stem: models, students_normal, ...
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)  # cells: str, int, Summary or None
    notes: list[str] = field(default_factory=list)
    text: tuple[str, ...] = ()  # this table's own text columns, besides TEXT_COLUMNS
    axis: str = ""  # a sweep table's swept setting, as its columns name it ("T" in "gain T=2")

    def is_text(self, column: str) -> bool:
        return column in TEXT_COLUMNS or column in self.text

    @property
    def key(self) -> str:
        return self.name.removeprefix("students_")

    def frame(self):
        """The table as a DataFrame of numbers: each Summary column split into mean, std, ci_lo, ci_hi, n (and,
        for a gain, whether its interval excludes zero); the CSV is this frame."""
        import pandas as pd  # see the module's note: never at import

        data: dict[str, list] = {}
        for i, c in enumerate(self.columns):
            cells = [row[i] for row in self.rows]
            if self.is_text(c):
                data[c] = cells
                continue
            for part in ("mean", "std", "lo", "hi"):
                data[f"{c} {'ci_' + part if part in ('lo', 'hi') else part}"] = pd.array(
                    [getattr(v, part) if v is not None else None for v in cells], dtype="Float64")
            data[f"{c} n"] = pd.array([v.n if v is not None else None for v in cells], dtype="Int64")
            if c.startswith("gain"):
                # significant: after the table's correction (the mark); p and p_adj: raw and adjusted
                data[f"{c} significant"] = [None if v is None or v.p_adj is None else str(v.marked).lower()
                                            for v in cells]
                for part in ("p", "p_adj"):
                    data[f"{c} {part}"] = pd.array([getattr(v, part) if v is not None else None for v in cells],
                                                   dtype="Float64")
            if any(v is not None and v.per_seed for v in cells):
                data[f"{c} per_seed"] = [v.seeds_text() if v is not None else None for v in cells]
        return pd.DataFrame(data)


@dataclass
class Tables:
    title: str
    metric: str
    tables: list[Table]
    long: Any  # the long table: a DataFrame, one row per finished run and split, every metric (runs.csv)
    finished: int
    planned: int
    synthetic: bool
    one_seed: bool
    robustness: Any = None  # a DataFrame: one row per run, shift and severity (robustness_cells.csv)
    sweeps: list = field(default_factory=list)  # a swept study's reports.sweep.Sweep per axis (the figures')
    options: Any = None  # the reports.intervals.StatsOptions the tables were built with
    # run id -> its point or settings group ("T=4", or "A" where runs of one model and role differ otherwise):
    # what tells look-alike runs apart in every figure and table that is not grouped by seed ("" where none)
    points: dict = field(default_factory=dict)

    def get(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def runs(self) -> list[dict]:
        """The long table's rows as dicts (what runs.csv holds)."""
        return [] if self.long is None else self.long.astype(object).where(self.long.notna(), None).to_dict("records")


def gain_bounds(metric: str) -> tuple[float, float]:
    lo, hi = METRICS[metric][1]
    return lo - hi, hi - lo


SYNTHETIC_NOTE = "SYNTHETIC data: generated images, not real radiographs."


def cell_notes(t: Table, synthetic: bool) -> None:
    """What a table of gains over seeds must say when its cells allow no interval, and synthetic data; the
    intervals' and the correction's notes are added where the table is corrected (tables.finish_notes)."""
    seeds_per_cell = max((v.n for row in t.rows for v in row if isinstance(v, Summary)), default=0)
    if seeds_per_cell <= 1:
        t.notes.append("One seed per cell: no interval can be given; run more seeds to tell a gain from noise.")
    if synthetic:
        t.notes.append(SYNTHETIC_NOTE)


# -- writing --------------------------------------------------------------------------------------------------
def cell_text(v, gain: bool = False, intervals: bool = True, n: bool = True) -> str:
    """A cell as the Markdown, the report and the LaTeX write it: mean ± std [interval] (n=…), and ``*`` where
    the gain is significant after the table's correction."""
    if v is None:
        return "–"
    if isinstance(v, Summary):
        return v.fmt(signed=gain, interval=intervals, n=n) + (" *" if gain and v.marked else "")
    return str(v)


def text_frame(t: Table):
    """The table's cells as the Markdown and the LaTeX write them (a DataFrame of text)."""
    import pandas as pd  # see the module's note: never at import

    return pd.DataFrame([[cell_text(v, gain=c.startswith("gain")) for c, v in zip(t.columns, row)] for row in t.rows],
                        columns=t.columns)
