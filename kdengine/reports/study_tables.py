"""A study's tables: teachers, students per strategy (the thesis's layout) with intervals and
paired gains, and a tidy long table of every metric; as CSV and Markdown (no torch, no pandas)."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text
from ..store import RunStore
from .collect import SPLITS, RunRecord, collect
from .stats import Summary, paired_gain, summarize

UNIT = (0.0, 1.0)

METRICS = ("accuracy", "macro_f1", "kappa", "ece", "loss", "agreement")
TEXT_COLUMNS = ("student", "teacher", "regime", "split", "n", "threshold reached")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)  # cells: str, float, Summary or None
    notes: list[str] = field(default_factory=list)


def _cell_text(v, signed=False, mark=False) -> str:
    if v is None:
        return "–"
    if isinstance(v, Summary):
        text = v.fmt(signed=signed)
        return text + (" *" if mark and v.excludes_zero else "")
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


@dataclass
class StudyTables:
    name: str
    teachers: Table
    students: dict[str, Table]
    long_rows: list[dict]
    one_seed: bool
    finished: int
    planned: int

    def all_tables(self) -> list[tuple[str, Table]]:
        return [("teachers", self.teachers)] + [(f"students_{s}", t) for s, t in self.students.items()]


def _records(store: RunStore, record: dict) -> list[tuple[RunRecord, dict]]:
    by_id = {r.run_id: r for r in collect(store)}
    return [(by_id[p["run_id"]], p) for p in record["runs"] if p["run_id"] in by_id]


def build(store: RunStore, record: dict) -> StudyTables:
    pairs = _records(store, record)
    finished = [(r, p) for r, p in pairs if r.state == "finished" and r.metrics]
    seeds = record["seeds"]
    one_seed = len(seeds) == 1
    # accuracy[split][(model, settings)] -> {seed: acc} for baselines
    base_acc: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r, p in finished:
        if r.kind == "ce" and r.spec.get("defect_acc") is None:
            for split in SPLITS:
                base_acc[(r.model, r.settings_key(), split)][r.spec["seed"]] = r.metrics[split]["accuracy"]

    # -- teachers: every cross-entropy run that teaches, by regime -------------------------------------
    teacher_cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r, p in finished:
        if r.kind != "ce" or "teacher" not in p["roles"]:
            continue
        if r.spec.get("defect_acc") is not None:
            regime = f"defective (stop at {r.spec['defect_acc']:.2f})"
            teacher_cells[(r.model, regime)]["reached"].append(bool((r.metrics.get("defect") or {}).get("reached")))
        else:
            regime = "normal"
        for split in SPLITS:
            teacher_cells[(r.model, regime)][split].append(r.metrics[split]["accuracy"])
    teachers = Table("Teachers: accuracy by training regime (mean ± std [95% CI] over seeds); a defective "
                     "teacher's accuracy is that of the weights it teaches with",
                     ["teacher", "regime", "train", "val", "test", "threshold reached", "n"])
    for (model, regime), cells in sorted(teacher_cells.items()):
        reached = f"{sum(cells['reached'])}/{len(cells['reached'])}" if cells.get("reached") else "–"
        teachers.rows.append([model, regime, *(summarize(cells[s], bounds=UNIT) for s in SPLITS), reached, len(cells["test"])])

    # -- students per strategy ---------------------------------------------------------------------------
    per: dict[str, dict[tuple, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    settings_of: dict[tuple, str] = {}
    teacher_names: dict[str, set] = defaultdict(set)
    for r, p in finished:
        if r.kind != "kd":
            continue
        label = r.teacher_label
        teacher_names[r.strategy].add(label)
        for split in SPLITS:
            per[r.strategy][(r.model, split, label)][r.spec["seed"]] = r.metrics[split]["accuracy"]
        settings_of[(r.strategy, r.model)] = r.settings_key()
    students: dict[str, Table] = {}
    for strategy in sorted(per):
        labels = sorted(teacher_names[strategy])
        table = Table(f"{strategy} KD: student accuracy (mean ± std [95% CI]); gain over the baseline, paired by seed",
                      ["student", "split", *labels, "baseline", *(f"gain {t}" for t in labels)])
        models = sorted({k[0] for k in per[strategy]})
        for model in models:
            settings = settings_of[(strategy, model)]
            for split in SPLITS:
                base = base_acc.get((model, settings, split), {})
                cells = [summarize(list(per[strategy].get((model, split, t), {}).values()), bounds=UNIT)
                         for t in labels]
                gains = [paired_gain(per[strategy].get((model, split, t), {}), base) for t in labels]
                table.rows.append([model, split, *cells, summarize(list(base.values()), bounds=UNIT), *gains])
        if one_seed:
            table.notes.append("One seed: no interval can be given; run more seeds to tell a gain from noise.")
        else:
            table.notes.append("* the gain's 95% interval excludes zero. Intervals are t-intervals over seeds, "
                               "clipped to the metric's range.")
        students[strategy] = table

    # -- the tidy long table --------------------------------------------------------------------------------
    long_rows = []
    for r, p in finished:
        for split in SPLITS:
            for metric in METRICS:
                value = r.metrics[split].get(metric)
                if value is None:
                    continue
                long_rows.append({"study": record["name"], "run_id": r.run_id, "kind": r.kind,
                                  "roles": "+".join(p["roles"]), "strategy": r.strategy, "teacher": r.teacher_label,
                                  "student": r.model, "seed": r.spec["seed"], "split": split, "metric": metric,
                                  "value": value, "synthetic": bool(r.metrics.get("synthetic"))})
    if any(r.metrics.get("synthetic") for r, _ in finished):
        for t in [teachers, *students.values()]:
            t.notes.append("SYNTHETIC data: generated images, not real radiographs.")
    return StudyTables(record["name"], teachers, students, long_rows, one_seed, len(finished), len(record["runs"]))


def table_csv(t: Table) -> str:
    """Numbers split into columns: mean, std, ci_lo, ci_hi, n per Summary cell, and a significance flag for gains."""
    out = io.StringIO()
    w = csv.writer(out)
    header = []
    for c in t.columns:
        if c in TEXT_COLUMNS:
            header.append(c)
        else:
            header += [f"{c} mean", f"{c} std", f"{c} ci_lo", f"{c} ci_hi", f"{c} n"]
            if c.startswith("gain"):
                header.append(f"{c} significant")
    w.writerow(header)
    for row in t.rows:
        line = []
        for c, v in zip(t.columns, row):
            if c in TEXT_COLUMNS:
                line.append(v)
                continue
            if v is None:
                line += [""] * 5
            else:
                line += [f"{v.mean:.4f}", "" if v.std is None else f"{v.std:.4f}",
                         "" if v.lo is None else f"{v.lo:.4f}", "" if v.hi is None else f"{v.hi:.4f}", v.n]
            if c.startswith("gain"):
                line.append("" if v is None or not v.has_interval else str(v.excludes_zero).lower())
        w.writerow(line)
    return out.getvalue()


def table_markdown(t: Table) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    for row in t.rows:
        lines.append("| " + " | ".join(_cell_text(v, signed=c.startswith("gain"), mark=c.startswith("gain"))
                                       for c, v in zip(t.columns, row)) + " |")
    lines += [""] + [f"_{n}_" for n in t.notes]
    return "\n".join(lines) + "\n"


def export(tables: StudyTables, out_dir: Path, fmt: str = "csv") -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    formats = ("csv", "md") if fmt == "both" else (fmt,)
    for name, table in tables.all_tables():
        for f in formats:
            path = out_dir / f"{name}.{f}"
            write_text(path, table_csv(table) if f == "csv" else table_markdown(table))
            written.append(path)
    if "csv" in formats:
        out = io.StringIO()
        cols = ["study", "run_id", "kind", "roles", "strategy", "teacher", "student", "seed", "split", "metric", "value",
                "synthetic"]
        w = csv.DictWriter(out, fieldnames=cols)
        w.writeheader()
        w.writerows(tables.long_rows)
        path = out_dir / "tidy.csv"
        write_text(path, out.getvalue())
        written.append(path)
    if "md" in formats:
        md = [f"# Study {tables.name}", "", f"{tables.finished} of {tables.planned} runs finished.", ""]
        md += [table_markdown(t) for _, t in tables.all_tables()]
        path = out_dir / "study.md"
        write_text(path, "\n".join(md))
        written.append(path)
    return written
