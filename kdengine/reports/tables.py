"""The comparison tables, built once for ``kdengine table``, ``kdengine study table``, kdtui's Results, the
report and scripts, on pandas.

Everything starts from one long DataFrame, one row per finished run and split (:func:`cell_frame`); the
tables are its groupings and pivots, each cell a :class:`~.stats.Summary` over seeds:

- **models**: every run trained alone (cross-entropy): teachers (by regime) and baselines.
- **students_<strategy>**: the thesis's layout: rows (student, split), one column per teacher, the
  student's baseline, and the gain over it per teacher, paired by seed.
- **robustness** and **robustness_<strategy>**: the same under acquisition shift, once evaluated.

Pairing is exact: a KD run's baseline is the one run ``baseline_of(spec)`` names, never a run that
merely has the same model. Cells average runs over seeds only: runs whose data or settings differ are
never blended. Where the runs of a table were trained under several settings, each settings group
gets its own rows, labelled A, B, ..., and a note says what differs between the groups.

pandas is imported where a table is built (about 0.4 s), never at import: kdtui's first screen does not
wait for it. No torch.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .. import strategy_catalog as catalog
from ..atomic import atomic_path, disk_errors, write_text
from ..errors import UsageError
from ..metric_names import HEADLINE, PER_SPLIT, SPLITS
from ..study.axes import axis_value, point_text, run_point
from .attention import attention_table
from .collect import RunRecord, roles_of
from .groups import group_rank, settings_groups, severity_text
from .stats import Summary, paired_gain, summarize
from .sweep import add_sweeps
from .table import METRICS, SYNTHETIC_NOTE, Table, Tables, cell_notes, cell_text, gain_bounds, summary_of

TIDY_METRICS = PER_SPLIT
SHIFT_METRICS = HEADLINE  # what shift.json keeps per cell
FORMATS = ("csv", "md", "parquet", "both", "all")  # both: CSV and Markdown; all: and Parquet


# -- the long table -----------------------------------------------------------------------------------------------
def with_baselines(records: list[RunRecord]):
    """(run, its finished baseline or None) for each finished run, in order: the pairing every table uses."""
    by_id = {r.run_id: r for r in records}
    for r in records:
        if r.finished:
            base = by_id.get(r.baseline_id) if r.baseline_id else None
            yield r, (base if base is not None and base.finished else None)


def cell_frame(records: list[RunRecord]):
    """One row per finished run and split: its identity, every metric, and its paired baseline's metrics
    (``base_<metric>``): what every wide table is grouped and pivoted from."""
    import pandas as pd  # see the module's note: never at import

    rows = []
    for r, base in with_baselines(records):
        for split in SPLITS:
            row = {"run_id": r.run_id, "kind": r.kind, "strategy": r.strategy, "regime": r.regime, "model": r.model,
                   "teacher": r.teacher_label, "seed": r.seed, "split": split}
            for m in METRICS:
                row[m] = r.metric(split, m)
                row[f"base_{m}"] = base.metric(split, m) if base is not None else None
            rows.append(row)
    columns = ["run_id", "kind", "strategy", "regime", "model", "teacher", "seed", "split",
               *(c for m in METRICS for c in (m, f"base_{m}"))]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def models_table(records: list[RunRecord], cells, roles: dict[str, set[str]], metric: str,
                 names: dict[str, str] | None = None) -> Table | None:
    ce = [r for r in records if r.kind == "ce" and r.finished]
    if not ce:
        return None
    groups, notes = settings_groups(ce, names)
    meta = {r.run_id: r for r in ce}
    frame = cells[cells["run_id"].isin(list(meta))].copy()
    frame["group"] = frame["run_id"].map(groups)
    frame["regime_label"] = [f"defective (stop at {meta[i].spec.defect_acc:.2f})" if meta[i].regime == "defective"
                             else "normal" for i in frame["run_id"]]
    frame["role"] = ["+".join(sorted(roles.get(i, {"baseline"}))) for i in frame["run_id"]]
    label = METRICS[metric][0]
    grouped = any(groups.values())
    table = Table("models", f"Models trained alone (cross-entropy): teachers and baselines, test {label} "
                  "(mean ± std [95% CI] over seeds); a defective teacher's numbers are those of the weights it "
                  "teaches with", (["settings"] if grouped else []) + ["model", "regime", "role", *SPLITS,
                                                                       "threshold reached", "n"], notes=notes)
    frame["group_rank"] = frame["group"].map(group_rank(groups))
    for (_, group, model, regime, role), g in frame.groupby(["group_rank", "group", "model", "regime_label", "role"],
                                                            sort=True):
        by_split = {s: g.loc[g["split"] == s, metric].tolist() for s in SPLITS}
        runs = list(dict.fromkeys(g["run_id"]))
        reached = [bool((meta[i].metrics.get("defect") or {}).get("reached")) for i in runs
                   if meta[i].regime == "defective"]
        table.rows.append(([group] if grouped else []) + [model, regime, role,
                                                          *(summary_of(by_split[s], metric) for s in SPLITS),
                                                          f"{sum(reached)}/{len(reached)}" if reached else "–",
                                                          len(by_split["test"])])
    return table


def _strategy_table(name: str, title: str, mine: list[RunRecord], cells, metric: str,
                    names: dict[str, str] | None = None) -> Table:
    """Rows (settings group, student, split); a column per teacher, the baseline, and the gain per teacher."""
    groups, notes = settings_groups(mine, names)
    grouped = any(groups.values())
    frame = cells[cells["run_id"].isin([r.run_id for r in mine])].copy()
    frame["group"] = frame["run_id"].map(groups)
    teachers = sorted({r.teacher_label for r in mine})
    table = Table(name, title, (["settings"] if grouped else []) + ["student", "split", *teachers, "baseline",
                                                                    *(f"gain {t}" for t in teachers)],
                  notes=list(notes))
    order = {s: i for i, s in enumerate(SPLITS)}
    frame["split_order"] = frame["split"].map(order)
    frame["group_rank"] = frame["group"].map(group_rank(groups))
    for (_, group, student, _), g in frame.groupby(["group_rank", "group", "model", "split_order"], sort=True):
        if not g[metric].notna().any():  # a row where some teacher has a value
            continue
        split = g["split"].iloc[0]
        # seed x teacher: the student's values, and its baseline's (paired by seed)
        values = g.pivot_table(index="seed", columns="teacher", values=metric, aggfunc="last")
        paired = g[g[f"base_{metric}"].notna()]
        bases = paired.pivot_table(index="seed", columns="teacher", values=f"base_{metric}", aggfunc="last")
        base_by_seed = paired.drop_duplicates("seed", keep="last").set_index("seed")[f"base_{metric}"]
        row = ([group] if grouped else []) + [student, split]
        row += [summary_of(values[t].dropna().tolist(), metric) if t in values else None for t in teachers]
        row.append(summary_of(base_by_seed.tolist(), metric) if len(base_by_seed) else None)
        for t in teachers:
            if t in values and t in bases:
                treated = {int(k): float(v) for k, v in values[t].dropna().items()}
                base = {int(k): float(v) for k, v in bases[t].dropna().items()}
                row.append(paired_gain(treated, base, bounds=gain_bounds(metric)) if treated and base else None)
            else:
                row.append(None)
        table.rows.append(row)
    if not METRICS[metric][2]:
        table.notes.append(f"Lower {METRICS[metric][0]} is better: a negative gain is an improvement.")
    return table


def student_tables(records: list[RunRecord], cells, metric: str, names: dict[str, str] | None = None) -> list[Table]:
    kd = [r for r in records if r.kind == "kd" and r.finished]
    out = []
    label = METRICS[metric][0]
    for strategy in [s for s in catalog.kd_names() if any(r.strategy == s for r in kd)]:
        mine = [r for r in kd if r.strategy == strategy]
        name = catalog.CATALOGUE[strategy].label
        out.append(_strategy_table(f"students_{strategy}",
                                   f"{name}: student {label} (mean ± std [95% CI] over seeds); gain over its baseline "
                                   "(the student trained alone, same data, settings and seed), paired by seed",
                                   mine, cells, metric, names))
    return out


def robustness_table(records: list[RunRecord], names: dict[str, str] | None = None) -> Table | None:
    """Each model and role (teacher, baseline, student of a strategy and teacher) over seeds: clean test
    accuracy, mean accuracy under shift, the relative drop from clean, each shift's mean, and external data."""
    done = [r for r in records if r.finished and r.shift]
    if not done:
        return None
    shifts = list(done[0].shift["per_shift"])
    groups, notes = settings_groups(done, names)
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
    sev = severity_text(done[0].shift["key"]["severities"])
    table = Table("robustness", "Robustness under acquisition shift: test accuracy, clean and under shift (mean over "
                  f"{len(shifts)} shifts x severities {sev}), the relative drop from clean, and each "
                  "shift's mean over its severities (mean ± std [95% CI] over seeds)", columns, notes=notes)
    rank = group_rank(groups)
    for (group, model, what, teacher), c in sorted(cells.items(), key=lambda kv: (rank[kv[0][0]], kv[0])):
        row = ([group] if grouped else []) + [model, what, teacher or "–"]
        row += [summarize(c[col], bounds=(-1.0, 1.0) if col == "relative drop" else (0.0, 1.0)) if c.get(col) else None
                for col in values]
        table.rows.append(row + [len(c["clean"])])
    return table


def robustness_frame(records: list[RunRecord]):
    """One row per run, shift and severity: the long table of every robustness figure."""
    import pandas as pd  # see the module's note: never at import

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
    return _typed(pd.DataFrame(rows)) if rows else None


def long_frame(records: list[RunRecord], roles: dict[str, set[str]], study: str = "", axes: list[str] = ()):
    """One row per finished run and split, with every metric and the paired baseline: the long table; a sweep's
    swept settings are columns of it (empty where the setting does not shape the run: a baseline's kd.*)."""
    import pandas as pd  # see the module's note: never at import

    groups, _ = settings_groups([r for r in records if r.spec])
    rows = []
    for r, base in with_baselines(records):
        teacher_meta = (r.metrics.get("teachers") or [{}])[0] if r.kind == "kd" else {}
        defect = r.metrics.get("defect") or teacher_meta.get("defect") or {}
        for split in SPLITS:
            row = {"study": study, "run_id": r.run_id, "kind": r.kind,
                   "role": "+".join(sorted(roles.get(r.run_id, ()))), "strategy": r.strategy or "",
                   "regime": r.regime or "", "teacher": r.teacher_label, "student": r.model, "seed": r.seed,
                   "split": split}
            row.update({m: r.metric(split, m) for m in TIDY_METRICS})
            row.update({"baseline_run_id": base.run_id if base else "",
                        "baseline_accuracy": base.metric(split) if base else None,
                        "gain": r.gain_over(base, split),
                        "defect_threshold": defect.get("threshold"), "defect_val_accuracy": defect.get("val_accuracy"),
                        "teacher_val_accuracy": teacher_meta.get("val_accuracy"), "settings": groups.get(r.run_id, ""),
                        "data": r.spec.data.source, "task": r.spec.data.task, "image_size": r.spec.data.image_size,
                        "epochs": r.spec.train.epochs, "best_epoch": r.metrics.get("best_epoch"),
                        "synthetic": bool(r.metrics.get("synthetic"))})
            row.update({k: axis_value(r.spec, k) for k in axes})
            rows.append(row)
    return _typed(pd.DataFrame(rows)) if rows else pd.DataFrame(columns=["run_id"])


def _typed(df):
    """Each column as its values are: whole numbers as nullable integers (a missing one does not make the rest
    floats), real numbers as floats, flags as booleans, the rest as text."""
    import pandas as pd  # see the module's note: never at import

    out = {}
    for c in df.columns:
        vals = [v for v in df[c].tolist() if v is not None and not (isinstance(v, float) and v != v)]
        if vals and all(isinstance(v, bool) for v in vals):
            out[c] = pd.array(df[c].tolist(), dtype="boolean")
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            out[c] = pd.array(df[c].tolist(), dtype="Int64")
        elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[c] = pd.array([None if v is None else float(v) for v in df[c].tolist()], dtype="Float64")
        else:
            out[c] = pd.Series(df[c].tolist(), dtype=object)
    return pd.DataFrame(out)


def build(records: list[RunRecord], metric: str = "accuracy", roles: dict[str, set[str]] | None = None,
          title: str = "all runs", planned: int | None = None, study: str = "",
          axes: dict[str, list] | None = None) -> Tables:
    """Every table for a set of records (a whole store, or one study's runs). ``axes``: a sweep's swept settings
    and their values ({"kd.temperature": [1, 2, 4, 8]}): columns of the long table, and the sweep tables."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric '{metric}' (choose {', '.join(METRICS)})")
    readable = [r for r in records if r.spec is not None]
    roles = {**roles_of(readable), **(roles or {})}
    cells = cell_frame(readable)
    names = {r.run_id: point_text(run_point(r.spec, list(axes))) for r in readable} if axes else None
    tables = [t for t in [models_table(readable, cells, roles, metric, names),
                          *student_tables(readable, cells, metric, names)] if t]
    attention = attention_table(readable)
    tables += [attention] if attention is not None else []
    robust = robustness_table(readable, names)
    if robust is not None and metric != "shift_mean":  # beside every accuracy table: the students under shift
        tables.append(robust)
        for t in student_tables(readable, cells, "shift_mean", names):
            t.name = t.name.replace("students_", "robustness_")
            tables.append(t)
    finished = [r for r in readable if r.finished]
    synthetic = any(r.metrics.get("synthetic") for r in finished)
    one_seed = all(v.n <= 1 for t in tables for row in t.rows for v in row if isinstance(v, Summary))
    for t in tables:
        if t.name.startswith(("students_", "robustness_")):
            cell_notes(t, synthetic)
        elif synthetic:
            t.notes.append(SYNTHETIC_NOTE)
    result = Tables(title, metric, tables, long_frame(readable, roles, study, axes or {}), len(finished),
                    planned if planned is not None else len(records), synthetic, one_seed,
                    robustness=robustness_frame(readable))
    if axes:
        add_sweeps(result, readable, axes, metric)
    return result


def table_csv(t: Table) -> str:
    """Numbers split into columns: mean, std, ci_lo, ci_hi, n per Summary cell, and a significance flag for gains."""
    return t.frame().to_csv(index=False, float_format="%.4f", na_rep="", lineterminator="\r\n")


def table_markdown(t: Table) -> str:
    import pandas as pd  # see the module's note: never at import

    text = pd.DataFrame([[cell_text(v, gain=c.startswith("gain")) for c, v in zip(t.columns, row)] for row in t.rows],
                        columns=t.columns)
    body = text.to_markdown(index=False, tablefmt="pipe") if len(text) else "| " + " | ".join(t.columns) + " |"
    return "\n".join([f"### {t.title}", "", body, ""] + [f"_{n}_" for n in t.notes]) + "\n"


def frame_csv(df) -> str:
    """A long table as CSV: real numbers to 6 decimals, a missing value empty."""
    if df is None or not len(df):
        return "run_id\r\n"
    return df.to_csv(index=False, float_format="%.6f", na_rep="", lineterminator="\r\n")


def export(tables: Tables, out_dir: Path, fmt: str = "csv") -> list[Path]:
    """Write each table as ``<name>.csv`` / ``.md`` / ``.parquet``, the long ``runs.csv`` (and
    ``robustness_cells.csv``), and with Markdown one ``tables.md`` holding them all. Returns the paths written."""
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    with disk_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    formats = {"both": ("csv", "md"), "all": ("csv", "md", "parquet")}.get(fmt, (fmt,))
    for table in tables.tables:
        for f in formats:
            path = out_dir / f"{table.name}.{f}"
            if f == "parquet":
                with atomic_path(path) as tmp:
                    table.frame().to_parquet(tmp, index=False)
            else:
                write_text(path, table_csv(table) if f == "csv" else table_markdown(table))
            written.append(path)
    longs = [("runs", tables.long)] + ([("robustness_cells", tables.robustness)] if tables.robustness is not None
                                       else [])
    for stem, df in longs:
        if "csv" in formats:
            write_text(out_dir / f"{stem}.csv", frame_csv(df))
            written.append(out_dir / f"{stem}.csv")
        if "parquet" in formats and df is not None and len(df):
            with atomic_path(out_dir / f"{stem}.parquet") as tmp:
                df.to_parquet(tmp, index=False)
            written.append(out_dir / f"{stem}.parquet")
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
        kinds[{".csv": "CSV", ".md": "Markdown", ".parquet": "Parquet"}.get(p.suffix, p.suffix)] += 1
    parts = [f"{n} {k}" for k, n in kinds.items()]
    return " and ".join(parts) + (" file" if sum(kinds.values()) == 1 else " files")
