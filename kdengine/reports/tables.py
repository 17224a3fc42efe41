"""The comparison tables, built once for ``kdengine table``, ``kdengine study table``, kdtui's Results, the
report and scripts, on pandas.

Everything starts from one long DataFrame, one row per finished run and split (:func:`cell_frame`); the
tables are its groupings and pivots, each cell a :class:`~.stats.Summary` over seeds:

- **models**: every run trained alone (cross-entropy): teachers (by regime) and baselines.
- **students_<strategy>**: the thesis's layout: rows (student, split), one column per teacher, the
  student's baseline, and the gain over it per teacher, paired by seed and by test image.
- **robustness** and **robustness_<strategy>**: the same under acquisition shift, once evaluated
  (:mod:`.robustness`, from the request :mod:`.shift_request` chooses); **attention**, and a sweep's tables.

Pairing is exact: a KD run's baseline is the one run ``baseline_of(spec)`` names, never a run that
merely has the same model. Cells average runs over seeds: runs whose data or settings differ are never
blended. Where the runs of a table were trained under several settings, each settings group gets its own
rows, labelled as every output labels it (:func:`~.groups.study_groups`), and a note says what differs.
Once every table is built, :func:`~.families.finish` decides each tested cell's family, correction, mark and
power, and writes each table's notes. A table's CSV is long and typed (:meth:`~.table_model.Table.frame`).

pandas is imported where a table is built (about 0.4 s), never at import: kdtui's first screen does not
wait for it. No torch.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .. import strategy_catalog as catalog
from ..atomic import atomic_path, disk_errors, write_text
from ..errors import UsageError
from ..metric_names import PER_SPLIT, SPLITS, YOUDEN
from ..study.axes import axis_value
from ..store.records import RunRecord, distinct, finished_baseline, roles_of
from . import families
from .attention import attention_table
from .correction import CORRECTIONS
from .groups import EVERY_POINT, Groups, group_rank, study_groups
from .intervals import StatsOptions, by_seed, gain_summary, paired, value_summary
from .latex import document, table_latex
from .robustness import robustness_frame, robustness_table
from .shift_request import choose as choose_shift
from .stats import INTERVALS, Summary
from .sweep import add_sweeps
from .table_model import (CELLS, METRICS, RANKING, SYNTHETIC_NOTE, Count, Table, Tables, cell_notes, task_kinds,
                          text_frame, usual_metric)
from .thresholds import at_rule, parse_rule, unread_note

TIDY_METRICS = (*PER_SPLIT, *RANKING)  # runs.csv: every metric of a split, the ranking ones too
FORMATS = ("csv", "md", "parquet", "latex", "both", "all")  # both: CSV and Markdown; all: and Parquet and LaTeX


# -- the long table -----------------------------------------------------------------------------------------------
def with_baselines(records: list[RunRecord]):
    """(run, its finished baseline or None) for each finished run, in order: the pairing every table uses."""
    by_id = {r.run_id: r for r in records}
    for r in records:
        if r.finished:
            yield r, finished_baseline(r, by_id)


def cell_frame(records: list[RunRecord]):
    """One row per finished run and split: its identity, every metric, and its paired baseline's metrics
    (``base_<metric>``): what every wide table is grouped and pivoted from."""
    import pandas as pd  # see the module's note: never at import

    rows = []
    for r, base in with_baselines(records):
        for split in SPLITS:
            row = {"run_id": r.run_id, "kind": r.kind, "strategy": r.strategy, "method": r.spec.method,
                   "regime": r.regime, "model": r.model, "teacher": r.teacher_label, "seed": r.seed, "split": split}
            for m in METRICS:
                row[m] = r.metric(split, m)
                row[f"base_{m}"] = base.metric(split, m) if base is not None else None
            rows.append(row)
    columns = ["run_id", "kind", "strategy", "method", "regime", "model", "teacher", "seed", "split",
               *(c for m in METRICS for c in (m, f"base_{m}"))]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def models_table(records: list[RunRecord], cells, roles: dict[str, set[str]], metric: str, groups: Groups,
                 opts: StatsOptions = StatsOptions()) -> Table | None:
    ce = [r for r in records if r.kind == "ce" and r.finished]
    if not ce:
        return None
    labels, notes = groups.of([r.run_id for r in ce])
    meta = {r.run_id: r for r in ce}
    frame = cells[cells["run_id"].isin(list(meta))].copy()
    frame["group"] = frame["run_id"].map(labels)
    frame["regime_label"] = [f"defective (stop at {meta[i].spec.defect_acc:.2f})" if meta[i].regime == "defective"
                             else "normal" for i in frame["run_id"]]
    frame["role"] = ["+".join(sorted(roles.get(i, {"baseline"}))) for i in frame["run_id"]]
    label = METRICS[metric][0]
    grouped = any(labels.values())
    table = Table("models", f"Models trained alone (cross-entropy): teachers and baselines, {label} on train, val and "
                  f"test ({CELLS}); a defective teacher's numbers are those of the weights it teaches with",
                  (["settings"] if grouped else []) + ["model", "regime", "role", *SPLITS, "threshold reached"],
                  notes=notes)
    frame["group_rank"] = frame["group"].map(group_rank(labels))
    for (_, group, model, regime, role), g in frame.groupby(["group_rank", "group", "model", "regime_label", "role"],
                                                            sort=True):
        runs = [meta[i] for i in dict.fromkeys(g["run_id"])]
        reached = [bool((r.metrics.get("defect") or {}).get("reached")) for r in runs if r.regime == "defective"]
        table.rows.append(([group] if grouped else []) + [model, regime, role,
                                                          *(value_summary(runs, s, metric, opts) for s in SPLITS),
                                                          Count(sum(reached), len(reached)) if reached else "–"])
    return table


def _strategy_table(name: str, title: str, mine: list[RunRecord], cells, metric: str, by_id: dict[str, RunRecord],
                    groups: Groups, opts: StatsOptions = StatsOptions()) -> Table:
    """Rows (settings group, student, split); a column per teacher, the baseline, and the gain per teacher."""
    labels, notes = groups.of([r.run_id for r in mine])
    grouped = any(labels.values())
    frame = cells[cells["run_id"].isin([r.run_id for r in mine])].copy()
    frame["group"] = frame["run_id"].map(labels)
    teachers = sorted({r.teacher_label for r in mine})
    table = Table(name, title, (["settings"] if grouped else []) + ["student", "split", *teachers, "baseline",
                                                                    *(f"gain {t}" for t in teachers)],
                  notes=list(notes))
    order = {s: i for i, s in enumerate(SPLITS)}
    frame["split_order"] = frame["split"].map(order)
    frame["group_rank"] = frame["group"].map(group_rank(labels))
    for (_, group, student, _), g in frame.groupby(["group_rank", "group", "model", "split_order"], sort=True):
        if not g[metric].notna().any():  # a row where some teacher has a value
            continue
        split = g["split"].iloc[0]
        runs = {t: [by_id[i] for i in g.loc[g["teacher"] == t, "run_id"]] for t in teachers}
        pairs = {t: paired(runs[t], by_id) for t in teachers}
        bases = list({b.seed: b for t in teachers for _, b in pairs[t]}.values())
        row = ([group] if grouped else []) + [student, split]
        row += [value_summary(runs[t], split, metric, opts) if runs[t] else None for t in teachers]
        row.append(value_summary(bases, split, metric, opts) if bases else None)
        row += [gain_summary(pairs[t], split, metric, opts) if pairs[t] else None for t in teachers]
        table.rows.append(row)
    if not METRICS[metric][2]:
        table.notes.append(f"Lower {METRICS[metric][0]} is better: a negative gain is an improvement.")
    return table


def student_tables(records: list[RunRecord], cells, metric: str, groups: Groups,
                   opts: StatsOptions = StatsOptions()) -> list[Table]:
    kd = [r for r in records if r.kind == "kd" and r.finished]
    by_id = {r.run_id: r for r in records}
    out = []
    label = METRICS[metric][0]
    for strategy in [s for s in catalog.kd_names() if any(r.strategy == s for r in kd)]:
        mine = [r for r in kd if r.strategy == strategy]
        name = catalog.CATALOGUE[strategy].label
        out.append(_strategy_table(f"students_{strategy}",
                                   f"{name}: student {label} ({CELLS}); gain over its baseline (the student trained "
                                   "alone, same data, settings and seed), paired by seed and by test image",
                                   mine, cells, metric, by_id, groups, opts))
    return out


def long_frame(records: list[RunRecord], roles: dict[str, set[str]], groups: Groups, study: str = "",
               axes: list[str] = ()):
    """One row per finished run and split, with every metric and the paired baseline: the long table; a sweep's
    swept settings are columns of it (empty where the setting does not shape the run: a baseline's kd.*)."""
    import pandas as pd  # see the module's note: never at import

    rows = []
    for r, base in with_baselines(records):
        teacher_meta = (r.metrics.get("teachers") or [{}])[0] if r.kind == "kd" else {}
        defect = r.metrics.get("defect") or teacher_meta.get("defect") or {}
        for split in SPLITS:
            row = {"study": study, "run_id": r.run_id, "kind": r.kind,
                   "role": "+".join(sorted(roles.get(r.run_id, ()))), "strategy": r.strategy or "",
                   "method": r.spec.method or "", "regime": r.regime or "", "teacher": r.teacher_label,
                   "student": r.model, "seed": r.seed, "split": split}
            row.update({m: r.metric(split, m) for m in TIDY_METRICS})
            # the rule sensitivity and specificity were read at (Youden's J, or --threshold's), where they were
            row["threshold_rule"] = ((r.metrics.get("task") or {}).get("threshold_rule") or YOUDEN) \
                if r.metric(split, "sensitivity") is not None else None
            row.update({"baseline_run_id": base.run_id if base else "",
                        "baseline_accuracy": base.metric(split) if base else None,
                        "gain": r.gain_over(base, split),
                        "defect_threshold": defect.get("threshold"), "defect_val_accuracy": defect.get("val_accuracy"),
                        "teacher_val_accuracy": teacher_meta.get("val_accuracy"),
                        "settings": groups.labels.get(r.run_id, ""),
                        "data": r.spec.data.source, "task": r.spec.data.task, "image_size": r.spec.data.image_size,
                        "epochs": r.spec.train.epochs, "best_epoch": r.metrics.get("best_epoch"),
                        "synthetic": bool(r.metrics.get("synthetic"))})
            row.update({k: axis_value(r.spec, k) for k in axes})
            rows.append(row)
    return typed(pd.DataFrame(rows)) if rows else pd.DataFrame(columns=["run_id"])


def typed(df):
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


TASK_WORDS = {"binary": "of the positive class (binary task)", "multiclass": "the mean over the classes, each "
              "one-vs-rest (multi-class task)", "multilabel": "the mean over the findings, each over the images "
              "whose label is known (multi-label task)"}


def metric_note(metric: str, runs: list[RunRecord]) -> str:
    """What a ranking metric is on these runs' tasks, and at which threshold sensitivity and specificity are read
    ("" for the others: accuracy and the rest say what they are in their name)."""
    if metric not in RANKING:
        return ""
    tasks = [(r.metrics.get("task") or {}) for r in runs]
    kinds = [k for k in TASK_WORDS if any(t.get("kind") == k for t in tasks)]
    what = {"auroc": "AUROC (scikit-learn's roc_auc_score)", "ap": "Average precision (scikit-learn's "
            "average_precision_score)", "sensitivity": "Sensitivity", "specificity": "Specificity"}[metric]
    text = f"{what}: " + ("; ".join(TASK_WORDS[k] for k in kinds) if kinds else "per class, and their mean") + "."
    if metric in ("sensitivity", "specificity"):
        rules = sorted({t.get("threshold_rule") or YOUDEN for t in tasks})
        named = ["Youden's J" if r == YOUDEN else f"the highest that reaches {r.replace('=', ' ')}" for r in rules]
        text += (f" At the threshold chosen on each run's val split ({' or '.join(named)}) and applied unchanged "
                 "to test; the val row is read at its own choice, so it flatters.")
    return text


def build(records: list[RunRecord], metric: str | None = "accuracy", roles: dict[str, set[str]] | None = None,
          title: str = "all runs", planned: int | None = None, study: str = "",
          axes: dict[str, list] | None = None, interval: str = "seeds+images", correction: str = "holm",
          primary: str = "", shift_request: dict | None = None, threshold: str = "") -> Tables:
    """Every table for a set of records (a whole store, or one study's runs), in ``metric`` (None: the one their
    tasks are usually read by: AUROC where every task is binary or multi-label). ``axes``: a sweep's swept settings
    and their values ({"kd.temperature": [1, 2, 4, 8]}): columns of the long table, and the sweep tables.
    ``interval``: what intervals cover (seeds+images, or seeds); ``correction``: of each family's marks (holm, bh,
    none); ``primary``: the study's primary family (corrected alone; the rest exploratory); ``shift_request``: the
    request under shift the robustness tables read (None: the one most runs have); ``threshold``: the rule that
    chooses sensitivity's and specificity's thresholds on val ("" as each run chose: Youden's J; or
    sensitivity=0.9: :mod:`.thresholds`). See README, Statistics."""
    if metric is None:  # the metric the runs' tasks are usually read by (AUROC for binary and multi-label)
        metric = usual_metric(task_kinds([r for r in records if r.spec is not None]))
    if metric not in METRICS:
        raise UsageError(f"unknown metric '{metric}' (choose {', '.join(METRICS)})")
    if interval not in INTERVALS:
        raise UsageError(f"--interval must be one of {', '.join(INTERVALS)}, got '{interval}'")
    if correction not in CORRECTIONS:
        raise UsageError(f"--correction must be one of {', '.join(CORRECTIONS)}, got '{correction}'")
    opts = StatsOptions(interval, correction, primary or "")
    rule, unread = parse_rule(threshold), []
    if rule:
        records, unread = at_rule(records, rule)
    readable, copies = distinct([r for r in records if r.spec is not None])
    readable, shift_key, shift_note = choose_shift(readable, shift_request)
    roles = {**roles_of(readable), **(roles or {})}
    groups = study_groups(readable, list(axes or {}))
    cells = cell_frame(readable)
    tables = [t for t in [models_table(readable, cells, roles, metric, groups, opts),
                          *student_tables(readable, cells, metric, groups, opts)] if t]
    attention = attention_table(readable, groups, opts)
    tables += [attention] if attention is not None else []
    robust = robustness_table(readable, groups, opts)
    if robust is not None and metric != "shift_mean":  # beside every accuracy table: the students under shift
        tables.append(robust)
        for t in student_tables(readable, cells, "shift_mean", groups, opts):
            t.name = t.name.replace("students_", "robustness_")
            tables.append(t)
    if shift_note:
        for t in tables:
            if t.name.startswith("robustness"):
                t.notes.append(shift_note)
    if copies:
        copy_note = (f"{len(copies)} run(s) repeat another run's computation and are left out: their settings differ "
                     "only in one the run does not read (trained before a run's identity held only what it reads): "
                     + ", ".join(copies[:4]) + (", ..." if len(copies) > 4 else ""))
        for t in tables:
            t.notes.append(copy_note)
    finished = [r for r in readable if r.finished]
    synthetic = any(r.metrics.get("synthetic") for r in finished)
    one_seed = all(v.n <= 1 for t in tables for row in t.rows for v in row if isinstance(v, Summary))
    for t in tables:
        if t.name.startswith(("students_", "robustness_")):
            cell_notes(t, synthetic)
        elif synthetic:
            t.notes.append(SYNTHETIC_NOTE)
    result = Tables(title, metric, tables, long_frame(readable, roles, groups, study, axes or {}), len(finished),
                    planned if planned is not None else len(records) - len(copies), synthetic, one_seed,
                    robustness=robustness_frame(readable, groups), options=opts)
    # figures name a run by its label; a run on no axis (a baseline) is named by nothing, it serves every point
    result.points = {rid: label.removeprefix(EVERY_POINT).strip() for rid, label in groups.labels.items()}
    result.shift_request = shift_key
    result.records = readable
    if axes:
        add_sweeps(result, readable, axes, metric, opts, groups)
    said = metric_note(metric, finished)
    if unread and metric in ("sensitivity", "specificity"):
        said += " " + unread_note(rule, unread)
    for t in result.tables:
        if said and t.name.startswith(("models", "students_", "sweep_")):
            t.notes.append(said)
    families.finish(result.tables, opts)
    return result


def table_csv(t: Table) -> str:
    """The table long and typed (Table.frame): one row per number cell, every number in a column of its own."""
    return t.frame().to_csv(index=False, float_format="%.4f", na_rep="", lineterminator="\r\n")


def table_markdown(t: Table) -> str:
    text = text_frame(t)
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
    formats = {"both": ("csv", "md"), "all": ("csv", "md", "parquet", "latex"), "latex": ("tex",)}.get(fmt, (fmt,))
    floats = []
    for table in tables.tables:
        for f in formats:
            path = out_dir / f"{table.name}.{f}"
            if f in ("tex", "latex"):
                path = out_dir / f"{table.name}.tex"
                floats.append(table_latex(table, tables.metric))
                write_text(path, floats[-1])
            elif f == "parquet":
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
    if floats:
        write_text(out_dir / "tables.tex", document(floats, tables.title))
        written.append(out_dir / "tables.tex")
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
        kinds[{".csv": "CSV", ".md": "Markdown", ".parquet": "Parquet", ".tex": "LaTeX"}.get(p.suffix, p.suffix)] += 1
    parts = [f"{n} {k}" for k, n in kinds.items()]
    return " and ".join(parts) + (" file" if sum(kinds.values()) == 1 else " files")
