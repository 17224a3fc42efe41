"""What a comparison table is (no torch, no pandas at import): the metrics, a table of Summary cells over seeds,
the set of tables one build makes, and how a cell is written; every table module builds on these."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stats import OVER_IMAGES, Summary, number

# metric -> (label, range, higher is better)
METRICS = {
    "accuracy": ("accuracy", (0.0, 1.0), True),
    "macro_f1": ("macro-F1", (0.0, 1.0), True),
    "kappa": ("Cohen's κ", (-1.0, 1.0), True),
    "ece": ("ECE", (0.0, 1.0), False),
    "shift_mean": ("accuracy under shift", (0.0, 1.0), True),  # test split, mean over shifts and severities
    # the ranking metrics: macro means over the classes (one-vs-rest), the positive class of a binary task, the mean
    # over the findings of a multi-label one; sensitivity and specificity at the threshold chosen on val
    "auroc": ("AUROC", (0.0, 1.0), True),
    "ap": ("average precision", (0.0, 1.0), True),
    "sensitivity": ("sensitivity", (0.0, 1.0), True),
    "specificity": ("specificity", (0.0, 1.0), True),
}
RANKING = ("auroc", "ap", "sensitivity", "specificity")  # their intervals: each image's influence (reports.ranking)
TEXT_COLUMNS = ("settings", "model", "student", "regime", "role", "split", "threshold reached", "n", "what", "teacher")
# how a table's title says what its cells are (one phrase, every table)
CELLS = "mean ± std over seeds [95% CI; n = seeds × test images where the interval covers both, else seeds only]"


@dataclass(frozen=True)
class Count:
    """k of n (the teachers that reached a threshold): ``k/n`` in a table, two numbers in its CSV."""
    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


@dataclass(frozen=True)
class Best:
    """A sweep row's value chosen on val, and the values tied with it: ``2 (tie: 4)`` in a table; in its CSV the
    value (typed as the axis is), whether it is tied, and with what."""
    value: Any
    ties: tuple = ()
    text: str = ""  # how the table writes the value ("2", "T=2, α=0.5")
    tie_texts: tuple = ()

    def __str__(self) -> str:
        if self.value is None:
            return "–"
        return self.text + (f" (tie: {', '.join(self.tie_texts)})" if self.ties else "")


def snake(column: str) -> str:
    """A header as a CSV column name: no spaces ("threshold reached" -> "threshold_reached")."""
    return "_".join(column.replace("(", " ").replace(")", " ").replace(",", " ").split())


@dataclass
class Table:
    name: str  # file stem: models, students_normal, ...
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)  # cells: str, int, Count, Best, Summary or None
    notes: list[str] = field(default_factory=list)
    text: tuple[str, ...] = ()  # this table's own text columns, besides TEXT_COLUMNS
    axis: str = ""  # a sweep table's swept setting, as its columns name it ("T" in "gain T=2")
    emphasis: set = field(default_factory=set)  # (row, column) cells the LaTeX sets in bold (a sweep: the val choice)

    def is_text(self, column: str) -> bool:
        return column in TEXT_COLUMNS or column in self.text

    @property
    def key(self) -> str:
        return self.name.removeprefix("students_")

    def meaning(self, column: str) -> tuple[str, str]:
        """(quantity, of what) of a number column, for the long CSV: ("gain", "resnet18"), ("student",
        "resnet18"), ("val", "T=2"), ("ρ", "teacher–student"), ("value", "test") ..."""
        if self.name == "models":
            return "value", column
        if "at best" in column or self.name == "robustness":
            return column, ""
        if self.name == "attention":
            head, _, tail = column.rpartition(" ")
            return (head, tail) if head else (column, "")
        if self.name.startswith(("students_", "robustness_")) and not column.startswith("gain "):
            return ("baseline", "") if column == "baseline" else ("student", column)
        for head in ("gain ", "val ", "teacher at stop "):
            if column.startswith(head):
                return head.strip(), column[len(head):]
        return column, ""

    def summary_columns(self) -> list[int]:
        return [j for j, c in enumerate(self.columns) if any(isinstance(row[j], Summary) for row in self.rows)
                or (not self.is_text(c) and not any(row[j] is not None for row in self.rows))]

    def frame(self):
        """The table long and typed (what its CSV and Parquet hold): one row per number cell, the row's text and
        count columns repeated on it, then the cell: mean, std, its 95% interval, n as seeds and test images, the
        interval's method (and why a cell fell back to the seeds only), its family, raw and adjusted p, the mark,
        the family's minimum detectable effect, and the per-seed values."""
        import pandas as pd  # see the module's note: never at import

        numbers = set(self.summary_columns())
        records = []
        for row in self.rows:
            fields: dict[str, Any] = {}
            for j, (c, v) in enumerate(zip(self.columns, row)):
                if j in numbers:
                    continue
                if isinstance(v, Count):
                    fields[snake(c)], fields[snake(c) + "_of"] = v.k, v.n
                elif isinstance(v, Best) and isinstance(v.value, dict):  # a combination: a column per axis
                    fields.update({f"{snake(c)}_{snake(k)}": x for k, x in v.value.items()})
                    fields["tie"] = bool(v.ties)
                    fields["tied_with"] = "; ".join(v.tie_texts)
                elif isinstance(v, Best):
                    fields[snake(c)] = v.value
                    fields["tie"] = bool(v.ties)
                    fields["tied_with"] = "; ".join(v.tie_texts)
                else:
                    fields[snake(c)] = None if v == "–" else v
            for j in sorted(numbers):
                v = row[j]
                if v is None:
                    continue
                quantity, of = self.meaning(self.columns[j])
                records.append({"table": self.name, **fields, "column": self.columns[j], "quantity": quantity,
                                "of": of, **cell_fields(v)})
        return _typed_frame(pd, records)


def cell_fields(v: Summary) -> dict[str, Any]:
    """A cell's numbers, as the long CSV has them (one column each)."""
    return {"mean": v.mean, "std": v.std, "ci_lo": v.lo, "ci_hi": v.hi, "n_seeds": v.n,
            "n_images": v.images if v.method in OVER_IMAGES else 0, "interval": v.method or "none",
            "fallback": v.fallback, "floored": "+".join(v.floored), "clipped": v.clipped, "tested": v.tested,
            "family": v.family, "p": v.p, "p_adj": v.p_adj, "significant": v.marked, "mark": v.mark, "mde": v.mde,
            "per_seed": v.seeds_text()}


def _typed_frame(pd, records: list[dict]):
    """Columns typed as their values are: numbers numeric (nullable where missing), flags boolean, the rest text."""
    frame = pd.DataFrame.from_records(records)
    for c in frame.columns:
        vals = [v for v in frame[c].tolist() if v is not None and not (isinstance(v, float) and v != v)]
        if vals and all(isinstance(v, bool) for v in vals):
            frame[c] = frame[c].astype("boolean")
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            frame[c] = frame[c].astype("Int64")
        elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            frame[c] = pd.array([None if v is None else float(v) for v in frame[c].tolist()], dtype="Float64")
    return frame


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
    shift_request: Any = None  # the request under shift the robustness tables read (its key), or None
    records: list = field(default_factory=list)  # the records the tables were built from (with that request's results)

    def get(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def task_kinds(self) -> set[str]:
        return task_kinds(self.records)

    @property
    def usual_metric(self) -> str:
        return usual_metric(self.task_kinds)

    @property
    def runs(self) -> list[dict]:
        """The long table's rows as dicts (what runs.csv holds)."""
        return [] if self.long is None else self.long.astype(object).where(self.long.notna(), None).to_dict("records")


def task_kinds(records) -> set[str]:
    """The kinds of task of the finished runs (multiclass, binary, multilabel; a run from before tasks were
    recorded is multi-class)."""
    return {((r.metrics or {}).get("task") or {}).get("kind") or "multiclass" for r in records if r.metrics}


def usual_metric(kinds) -> str:
    """The metric the field reads first on these kinds of task: AUROC where every task is binary or multi-label
    (screening, findings), accuracy otherwise (the thesis's)."""
    kinds = set(kinds)
    return "auroc" if kinds and kinds <= {"binary", "multilabel"} else "accuracy"


def gain_bounds(metric: str) -> tuple[float, float]:
    lo, hi = METRICS[metric][1]
    return lo - hi, hi - lo


SYNTHETIC_NOTE = "SYNTHETIC data: generated images, not real radiographs."


def cell_notes(t: Table, synthetic: bool) -> None:
    """What a table of gains over seeds must say when its cells allow no interval, and synthetic data; the
    intervals' and the correction's notes are added where the tables are corrected (families.finish)."""
    seeds_per_cell = max((v.n for row in t.rows for v in row if isinstance(v, Summary)), default=0)
    if seeds_per_cell <= 1:
        t.notes.append("One seed per cell: no interval can be given; run more seeds to tell a gain from noise.")
    if synthetic:
        t.notes.append(SYNTHETIC_NOTE)


# -- writing --------------------------------------------------------------------------------------------------
def cell_text(v, gain: bool = False, intervals: bool = True, n: bool = True) -> str:
    """A cell as every front end writes it (Markdown, LaTeX, HTML, kdtui): :meth:`Summary.text` for a number's
    cell, the text itself otherwise."""
    if v is None:
        return "–"
    return v.text(gain, intervals, n) if isinstance(v, Summary) else str(v)


def cell_detail(column: str, v: Summary) -> str:
    return v.detail(column)


def text_frame(t: Table):
    """The table's cells as the Markdown and the LaTeX write them (a DataFrame of text)."""
    import pandas as pd  # see the module's note: never at import

    return pd.DataFrame([[cell_text(v, gain=c.startswith("gain")) for c, v in zip(t.columns, row)] for row in t.rows],
                        columns=t.columns)
