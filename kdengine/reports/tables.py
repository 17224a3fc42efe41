"""The comparison tables, built once for ``kdengine table``, ``kdengine study table`` and kdtui's Results.

- **models**: every run trained alone (cross-entropy): teachers (by regime) and baselines.
- **students_<strategy>**: the thesis's layout: rows (student, split), one column per teacher, the
  student's baseline, and the gain over it per teacher, paired by seed.

Pairing is exact: a KD run's baseline is the one run ``baseline_of(spec)`` names, never a run that
merely has the same model. Cells average runs over seeds only: runs whose data or settings differ are
never blended. Where the runs of a table were trained under several settings, each settings group
gets its own rows, labelled A, B, ..., and a note says what differs between the groups.
No torch, no pandas.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import strategy_catalog as catalog
from ..atomic import write_text
from .collect import SPLITS, RunRecord, differing_keys, flat_settings, roles_of, settings_key
from .stats import Summary, paired_gain, summarize

# metric -> (label, range, higher is better)
METRICS = {
    "accuracy": ("accuracy", (0.0, 1.0), True),
    "macro_f1": ("macro-F1", (0.0, 1.0), True),
    "kappa": ("Cohen's κ", (-1.0, 1.0), True),
    "ece": ("ECE", (0.0, 1.0), False),
    "shift_mean": ("accuracy under shift", (0.0, 1.0), True),  # test split, mean over shifts and severities
}
TIDY_METRICS = ("accuracy", "macro_f1", "kappa", "ece", "loss", "agreement")
SHIFT_METRICS = ("accuracy", "macro_f1", "kappa", "ece")  # what shift.json keeps per cell
TEXT_COLUMNS = ("settings", "model", "student", "regime", "role", "split", "threshold reached", "n", "what", "teacher")


@dataclass
class Table:
    name: str  # file stem: models, students_normal, ...
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)  # cells: str, int, Summary or None
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.name.removeprefix("students_")


@dataclass
class Tables:
    title: str
    metric: str
    tables: list[Table]
    runs: list[dict]  # tidy: one row per finished run and split, every metric
    finished: int
    planned: int
    synthetic: bool
    one_seed: bool
    robustness: list[dict] = field(default_factory=list)  # one row per run, shift and severity

    def get(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)


def settings_groups(records: list[RunRecord]) -> tuple[dict[str, str], list[str]]:
    """run_id -> group label ("" when all share one settings), and one note per group saying what differs."""
    keys: dict[str, str] = {}
    idents: dict[str, dict] = {}
    for r in records:
        k = settings_key(r.spec)
        keys[r.run_id] = k
        idents.setdefault(k, flat_settings(r.spec))
    if len(idents) <= 1:
        return {rid: "" for rid in keys}, []
    order = sorted(idents, key=lambda k: min(r.run_id for r in records if keys[r.run_id] == k))
    labels = {k: chr(ord("A") + i) if i < 26 else f"S{i}" for i, k in enumerate(order)}
    varying = differing_keys(list(idents.values()))
    notes = [f"settings {labels[k]}: " + ", ".join(f"{n}={idents[k].get(n)}" for n in varying) for k in order]
    return {rid: labels[k] for rid, k in keys.items()}, notes


def _summary(values, metric: str) -> Summary | None:
    return summarize(list(values), bounds=METRICS[metric][1])


def _gain(treated: dict[int, float], baseline: dict[int, float], metric: str) -> Summary | None:
    lo, hi = METRICS[metric][1]
    return paired_gain(treated, baseline, bounds=(lo - hi, hi - lo))


def models_table(records: list[RunRecord], roles: dict[str, set[str]], metric: str) -> Table | None:
    ce = [r for r in records if r.kind == "ce" and r.finished]
    if not ce:
        return None
    groups, notes = settings_groups(ce)
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in ce:
        regime = f"defective (stop at {r.spec.defect_acc:.2f})" if r.regime == "defective" else "normal"
        key = (groups[r.run_id], r.model, regime, "+".join(sorted(roles.get(r.run_id, {"baseline"}))))
        for split in SPLITS:
            cells[key][split].append(r.metric(split, metric))
        if r.regime == "defective":
            cells[key]["reached"].append(bool((r.metrics.get("defect") or {}).get("reached")))
    label = METRICS[metric][0]
    grouped = any(groups.values())
    table = Table("models", f"Models trained alone (cross-entropy): teachers and baselines, test {label} "
                  "(mean ± std [95% CI] over seeds); a defective teacher's numbers are those of the weights it "
                  "teaches with", (["settings"] if grouped else []) + ["model", "regime", "role", *SPLITS,
                                                                       "threshold reached", "n"], notes=notes)
    for (group, model, regime, role), c in sorted(cells.items()):
        reached = f"{sum(c['reached'])}/{len(c['reached'])}" if c.get("reached") else "–"
        table.rows.append(([group] if grouped else []) + [model, regime, role,
                                                          *(_summary(c[s], metric) for s in SPLITS), reached,
                                                          len(c["test"])])
    return table


def student_tables(records: list[RunRecord], metric: str) -> list[Table]:
    by_id = {r.run_id: r for r in records}
    kd = [r for r in records if r.kind == "kd" and r.finished]
    out = []
    label = METRICS[metric][0]
    for strategy in [s for s in catalog.kd_names() if any(r.strategy == s for r in kd)]:
        mine = [r for r in kd if r.strategy == strategy]
        groups, notes = settings_groups(mine)
        grouped = any(groups.values())
        teachers = sorted({r.teacher_label for r in mine})
        # (group, student, split) -> teacher label -> {seed: value}; and the paired baseline values
        cells: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        bases: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for r in mine:
            base = by_id.get(r.baseline_id)
            for split in SPLITS:
                key = (groups[r.run_id], r.model, split)
                value = r.metric(split, metric)
                if value is not None:
                    cells[key][r.teacher_label][r.seed] = value
                if base is not None and base.finished and base.metric(split, metric) is not None:
                    bases[key][r.teacher_label][r.seed] = base.metric(split, metric)
        name = catalog.CATALOGUE[strategy].label
        table = Table(f"students_{strategy}",
                      f"{name}: student {label} (mean ± std [95% CI] over seeds); gain over its baseline (the "
                      "student trained alone, same data, settings and seed), paired by seed",
                      (["settings"] if grouped else []) + ["student", "split", *teachers, "baseline",
                                                           *(f"gain {t}" for t in teachers)], notes=list(notes))
        order = {s: i for i, s in enumerate(SPLITS)}
        for key in sorted(cells, key=lambda k: (k[0], k[1], order[k[2]])):
            group, student, split = key
            base_by_seed: dict[int, float] = {}
            for per_teacher in bases[key].values():
                base_by_seed.update(per_teacher)
            row = ([group] if grouped else []) + [student, split]
            row += [_summary(cells[key][t].values(), metric) if cells[key].get(t) else None for t in teachers]
            row.append(_summary(base_by_seed.values(), metric) if base_by_seed else None)
            row += [_gain(cells[key][t], bases[key][t], metric) if cells[key].get(t) and bases[key].get(t) else None
                    for t in teachers]
            table.rows.append(row)
        if not METRICS[metric][2]:
            table.notes.append(f"Lower {label} is better: a negative gain is an improvement.")
        out.append(table)
    return out


def robustness_table(records: list[RunRecord]) -> Table | None:
    """Each model and role (teacher, baseline, student of a strategy and teacher) over seeds: clean test
    accuracy, mean accuracy under shift, the relative drop from clean, each shift's mean, and external data."""
    done = [r for r in records if r.finished and r.shift]
    if not done:
        return None
    shifts = list(done[0].shift["per_shift"])
    groups, notes = settings_groups(done)
    grouped = any(groups.values())
    external = any(r.shift.get("external") for r in done)
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in done:
        what = r.strategy or ("defective teacher" if r.regime == "defective" else "trained alone")
        key = (groups[r.run_id], r.model, what, r.teacher_label)
        cells[key]["clean"].append(r.shift["clean"]["accuracy"])
        cells[key]["under shift"].append(r.shift["mean_accuracy"])
        if r.shift.get("relative_drop") is not None:
            cells[key]["relative drop"].append(r.shift["relative_drop"])
        for name in shifts:
            if name in r.shift["per_shift"]:
                cells[key][name].append(r.shift["per_shift"][name])
        if r.shift.get("external"):
            cells[key]["external"].append(r.shift["external"]["accuracy"])
    values = ["clean", "under shift", "relative drop", *(["external"] if external else []), *shifts]
    columns = (["settings"] if grouped else []) + ["model", "what", "teacher", *values, "n"]
    sev = done[0].shift["key"]["severities"]
    table = Table("robustness", "Robustness under acquisition shift: test accuracy, clean and under shift (mean over "
                  f"{len(shifts)} shifts x severities {sev[0]}..{sev[-1]}), the relative drop from clean, and each "
                  "shift's mean over its severities (mean ± std [95% CI] over seeds)", columns, notes=notes)
    for (group, model, what, teacher), c in sorted(cells.items()):
        row = ([group] if grouped else []) + [model, what, teacher or "–"]
        row += [summarize(c[col], bounds=(-1.0, 1.0) if col == "relative drop" else (0.0, 1.0)) if c.get(col) else None
                for col in values]
        table.rows.append(row + [len(c["clean"])])
    return table


def robustness_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per run, shift and severity: the long table of every robustness figure."""
    rows = []
    for r in records:
        if not (r.finished and r.shift):
            continue
        base = {"run_id": r.run_id, "strategy": r.strategy or "", "regime": r.regime or "", "teacher": r.teacher_label,
                "student": r.model, "seed": r.seed}
        rows.append({**base, "shift": "clean", "severity": 0, **{k: r.shift["clean"].get(k) for k in SHIFT_METRICS}})
        for name, levels in r.shift["cells"].items():
            for severity, m in levels.items():
                rows.append({**base, "shift": name, "severity": int(severity),
                             **{k: m.get(k) for k in SHIFT_METRICS}})
        if r.shift.get("external"):
            rows.append({**base, "shift": f"external:{r.shift['external']['source']}", "severity": 0,
                         **{k: r.shift["external"].get(k) for k in SHIFT_METRICS}})
    return rows


def tidy_rows(records: list[RunRecord], roles: dict[str, set[str]], study: str = "") -> list[dict[str, Any]]:
    """One row per finished run and split, with every metric and the paired baseline: the long table."""
    by_id = {r.run_id: r for r in records}
    groups, _ = settings_groups([r for r in records if r.spec])
    rows = []
    for r in records:
        if not r.finished:
            continue
        base = by_id.get(r.baseline_id) if r.baseline_id else None
        base = base if base is not None and base.finished else None
        teacher_meta = (r.metrics.get("teachers") or [{}])[0] if r.kind == "kd" else {}
        defect = r.metrics.get("defect") or teacher_meta.get("defect") or {}
        for split in SPLITS:
            row = {"study": study, "run_id": r.run_id, "kind": r.kind,
                   "role": "+".join(sorted(roles.get(r.run_id, ()))), "strategy": r.strategy or "",
                   "regime": r.regime or "", "teacher": r.teacher_label, "student": r.model, "seed": r.seed,
                   "split": split}
            row.update({m: r.metric(split, m) for m in TIDY_METRICS})
            acc = r.metric(split)
            row.update({"baseline_run_id": base.run_id if base else "",
                        "baseline_accuracy": base.metric(split) if base else None,
                        "gain": acc - base.metric(split) if base and acc is not None and base.metric(split) is not None
                        else None,
                        "defect_threshold": defect.get("threshold"), "defect_val_accuracy": defect.get("val_accuracy"),
                        "teacher_val_accuracy": teacher_meta.get("val_accuracy"), "settings": groups.get(r.run_id, ""),
                        "data": r.spec.data.source, "task": r.spec.data.task, "image_size": r.spec.data.image_size,
                        "epochs": r.spec.train.epochs, "best_epoch": r.metrics.get("best_epoch"),
                        "synthetic": bool(r.metrics.get("synthetic"))})
            rows.append(row)
    return rows


def build(records: list[RunRecord], metric: str = "accuracy", roles: dict[str, set[str]] | None = None,
          title: str = "all runs", planned: int | None = None, study: str = "") -> Tables:
    """Every table for a set of records (a whole store, or one study's runs)."""
    if metric not in METRICS:
        from ..errors import UsageError

        raise UsageError(f"unknown metric '{metric}' (choose {', '.join(METRICS)})")
    readable = [r for r in records if r.spec is not None]
    roles = {**roles_of(readable), **(roles or {})}
    tables = [t for t in [models_table(readable, roles, metric), *student_tables(readable, metric)] if t]
    robust = robustness_table(readable)
    if robust is not None and metric != "shift_mean":  # beside every accuracy table: the students under shift
        tables.append(robust)
        for t in student_tables(readable, "shift_mean"):
            t.name = t.name.replace("students_", "robustness_")
            tables.append(t)
    finished = [r for r in readable if r.finished]
    seeds = {r.seed for r in finished}
    synthetic = any(r.metrics.get("synthetic") for r in finished)
    one_seed = len(seeds) <= 1
    for t in tables:
        if t.name.startswith("students_"):
            t.notes.append("One seed: no interval can be given; run more seeds to tell a gain from noise." if one_seed
                           else "* the gain's 95% interval excludes zero. Intervals are t-intervals over seeds, "
                                "clipped to the metric's range.")
        if synthetic:
            t.notes.append("SYNTHETIC data: generated images, not real radiographs.")
    return Tables(title, metric, tables, tidy_rows(readable, roles, study), len(finished),
                  planned if planned is not None else len(records), synthetic, one_seed,
                  robustness=robustness_rows(readable))


# -- writing --------------------------------------------------------------------------------------------------
def cell_text(v, gain: bool = False, intervals: bool = True) -> str:
    if v is None:
        return "–"
    if isinstance(v, Summary):
        return v.fmt(signed=gain, interval=intervals) + (" *" if gain and v.excludes_zero else "")
    return str(v)


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
        lines.append("| " + " | ".join(cell_text(v, gain=c.startswith("gain")) for c, v in zip(t.columns, row)) + " |")
    lines += [""] + [f"_{n}_" for n in t.notes]
    return "\n".join(lines) + "\n"


def runs_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    cols = list(rows[0]) if rows else ["run_id"]
    w = csv.DictWriter(out, fieldnames=cols)
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def export(tables: Tables, out_dir: Path, fmt: str = "csv") -> list[Path]:
    """Write each table as ``<name>.csv`` and/or ``<name>.md``, the long ``runs.csv``, and with Markdown one
    ``tables.md`` holding them all. Returns the paths written."""
    from ..atomic import disk_errors
    from ..errors import UsageError

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    with disk_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    formats = ("csv", "md") if fmt == "both" else (fmt,)
    for table in tables.tables:
        for f in formats:
            path = out_dir / f"{table.name}.{f}"
            write_text(path, table_csv(table) if f == "csv" else table_markdown(table))
            written.append(path)
    if "csv" in formats:
        path = out_dir / "runs.csv"
        write_text(path, runs_csv(tables.runs))
        written.append(path)
        if tables.robustness:
            path = out_dir / "robustness_cells.csv"
            write_text(path, runs_csv(tables.robustness))
            written.append(path)
    if "md" in formats:
        md = [f"# {tables.title}", "", f"{tables.finished} of {tables.planned} runs finished; metric: "
              f"{METRICS[tables.metric][0]}.", ""]
        md += [table_markdown(t) for t in tables.tables]
        path = out_dir / "tables.md"
        write_text(path, "\n".join(md))
        written.append(path)
    return written


def describe_written(paths: list[Path]) -> str:
    """'4 CSV and 4 Markdown files' — what an export wrote, exactly."""
    kinds: dict[str, int] = defaultdict(int)
    for p in paths:
        kinds[{".csv": "CSV", ".md": "Markdown"}.get(p.suffix, p.suffix)] += 1
    parts = [f"{n} {k}" for k, n in kinds.items()]
    return " and ".join(parts) + (" file" if sum(kinds.values()) == 1 else " files")
