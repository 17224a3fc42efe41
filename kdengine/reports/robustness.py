"""The robustness table: each model and role under acquisition shift (no torch), from each run's results under the
request the tables read (:mod:`.shift_request`).

Every column but the relative drop is a mean over the test images (clean correctness; its mean over the request's
shifts and severities; over one shift's severities; correctness on the external data), so with the per-image
predictions kept beside the results (``shift/<request>.npz``) its interval covers the seeds and the test images,
crossed, as the accuracy tables' do (:func:`~.intervals.over_seeds`). The relative drop is a ratio of two means:
seeds only, and its note says so.
"""
from __future__ import annotations

from collections import defaultdict

from ..metric_names import HEADLINE
from ..store.records import RunRecord
from .groups import Groups, group_rank, severity_text
from .intervals import MEAN, SHIFT_MISSING, OverImages, StatsOptions, by_seed, over_seeds, shift_scores
from .table_model import CELLS, Table

SHIFT_METRICS = HEADLINE  # what shift.json keeps per cell
RATIO = "a ratio of two means (clean and under shift), not a mean over test images"


def _value(r: RunRecord, column: str) -> float | None:
    sh = r.shift
    if column == "clean":
        return sh["clean"]["accuracy"]
    if column == "under shift":
        return sh["mean_accuracy"]
    if column == "relative drop":
        return sh.get("relative_drop")
    if column == "external":
        return (sh.get("external") or {}).get("accuracy")
    return sh["per_shift"].get(column)


def _cell(runs: list[RunRecord], column: str, opts: StatsOptions):
    seeds = sorted((s, r) for s, r in by_seed(runs).items() if _value(r, column) is not None)
    if not seeds:
        return None
    how = None if column == "relative drop" else OverImages(MEAN, scores=shift_scores(column), missing=SHIFT_MISSING)
    bounds = (-1.0, 1.0) if column == "relative drop" else (0.0, 1.0)
    return over_seeds([(s, (r,)) for s, r in seeds], [_value(r, column) for _, r in seeds], "test", how, opts,
                      bounds, False, ("robustness", column, tuple(sorted(r.run_id for _, r in seeds))),
                      none_reason=RATIO)


def robustness_table(records: list[RunRecord], groups: Groups, opts: StatsOptions) -> Table | None:
    """Each model and role (teacher, baseline, student of a strategy and teacher) over seeds: clean test
    accuracy, mean accuracy under shift, the relative drop from clean, each shift's mean, and external data."""
    done = [r for r in records if r.finished and r.shift]
    if not done:
        return None
    shifts = list(done[0].shift["per_shift"])
    labels, notes = groups.of([r.run_id for r in done])
    grouped = any(labels.values())
    external = any(r.shift.get("external") for r in done)
    rows: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in done:
        what = r.strategy or ("defective teacher" if r.regime == "defective" else "trained alone")
        rows[(labels[r.run_id], r.model, what, r.teacher_label)].append(r)
    values = ["clean", "under shift", "relative drop", *(["external"] if external else []), *shifts]
    columns = (["settings"] if grouped else []) + ["model", "what", "teacher", *values]
    sev = severity_text(done[0].shift["key"]["severities"])
    table = Table("robustness", "Robustness under acquisition shift: test accuracy, clean and under shift (mean over "
                  f"{len(shifts)} shifts × severities {sev}), the relative drop from clean, and each shift's mean over "
                  f"its severities ({CELLS})", columns, notes=notes)
    rank = group_rank(labels)
    for (group, model, what, teacher), runs in sorted(rows.items(), key=lambda kv: (rank[kv[0][0]], kv[0])):
        row = ([group] if grouped else []) + [model, what, teacher or "–"]
        table.rows.append(row + [_cell(runs, col, opts) for col in values])
    return table


def robustness_frame(records: list[RunRecord], groups: Groups):
    """One row per run, shift and severity: the long table of every robustness figure (robustness_cells.csv)."""
    import pandas as pd  # see tables' note: never at import

    from .tables import typed  # tables imports this module: its typing helper, when a frame is made

    rows = []
    for r in records:
        if not (r.finished and r.shift):
            continue
        base = {"run_id": r.run_id, "strategy": r.strategy or "", "method": r.spec.method or "",
                "regime": r.regime or "", "teacher": r.teacher_label, "student": r.model, "seed": r.seed,
                "settings": groups.labels.get(r.run_id, "")}
        rows.append({**base, "shift": "clean", "severity": 0, **{k: r.shift["clean"].get(k) for k in SHIFT_METRICS}})
        for name, levels in r.shift["cells"].items():
            for severity, m in levels.items():
                rows.append({**base, "shift": name, "severity": int(severity),
                             **{k: m.get(k) for k in SHIFT_METRICS}})
        if r.shift.get("external"):
            rows.append({**base, "shift": f"external:{r.shift['external']['source']}", "severity": 0,
                         **{k: r.shift["external"].get(k) for k in SHIFT_METRICS}})
    return typed(pd.DataFrame(rows)) if rows else None
