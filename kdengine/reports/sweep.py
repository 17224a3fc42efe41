"""A sweep's tables: the gain over the baseline against each swept setting, and the best value (no torch).

Per axis, one table (``sweep_<axis>``): a row per strategy, teacher, student and value of the other axes; at each
value of the axis the student's test gain over its baseline (paired by seed, with its interval) and its mean val
metric; then the best value and its test gain. The best value is chosen on validation only (the highest mean val
metric of the student over seeds; the first value on a tie) and then reported on test: a value picked on test
would flatter the method, so test never takes part in the choice. With a ``kd.*`` axis the baseline is the same run
at every value, so the best val metric is also the best val gain.

Swept over ``kd.defect_acc``, the table also shows each defective teacher's val accuracy at its stop.

With several axes, ``sweep_best`` picks the best combination per strategy, teacher and student the same way.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .. import strategy_catalog as catalog
from ..study.axes import axis_value, label, norm, point_text, value_text, without_axes
from .collect import RunRecord
from .groups import settings_groups
from .stats import paired_gain, summarize
from .table import METRICS, Table, Tables, cell_notes, gain_bounds


@dataclass
class SweepRow:
    """One line of a sweep: a strategy, teacher and student at fixed values of the other axes."""
    group: str  # the settings group ("" when the sweep's runs share every other setting)
    strategy: str
    teacher: str
    student: str
    others: dict[str, str | None]  # the other axes' values, as text (None: the axis does not shape this row)
    gain: dict = field(default_factory=dict)  # value -> test gain over the baseline (Summary)
    val: dict = field(default_factory=dict)  # value -> the student's val metric (Summary)
    teacher_stop: dict = field(default_factory=dict)  # value -> the defective teacher's val accuracy at its stop
    best: object = None  # the value chosen on val

    @property
    def title(self) -> str:
        rest = ", ".join(f"{k}={v}" for k, v in self.others.items() if v is not None)
        return f"{self.strategy}: {self.teacher} → {self.student}" + (f" ({rest})" if rest else "") + \
            (f" [settings {self.group}]" if self.group else "")


@dataclass
class Sweep:
    key: str  # the axis: "kd.temperature"
    values: list  # its values, in the study's order (normalised: 2 -> 2.0)
    metric: str
    rows: list[SweepRow]
    notes: list[str]

    @property
    def label(self) -> str:
        return label(self.key)


def _ordered(declared: list, seen: list) -> list:
    out = [norm(v) for v in declared]
    return out + sorted({v for v in seen if v not in out}, key=repr)


def _pick(val: dict, values: list, higher: bool):
    """The value with the best mean val metric (the first one on a tie); None without any."""
    scored = [(v, val[v].mean) for v in values if val.get(v) is not None]
    if not scored:
        return None
    best = max(s for _, s in scored) if higher else min(s for _, s in scored)
    return next(v for v, s in scored if s == best)


def _order(key: tuple) -> tuple:
    """Rows in the catalogue's order of strategies (normal, reverse, defective ...), then by name."""
    group, strategy, *rest = key
    return (group, catalog.names().index(strategy) if strategy in catalog.CATALOGUE else 99, strategy, *rest)


def _test_gain(runs: list[RunRecord], by_id: dict[str, RunRecord], metric: str):
    """Each run's test metric minus its own baseline's, paired by seed; None without a finished baseline."""
    treated, base = {}, {}
    for r in runs:
        b = by_id.get(r.baseline_id) if r.baseline_id else None
        mine, theirs = r.metric("test", metric), b.metric("test", metric) if b is not None and b.finished else None
        if mine is not None and theirs is not None:
            treated[r.seed], base[r.seed] = mine, theirs
    return paired_gain(treated, base, bounds=gain_bounds(metric)) if treated else None


def _settings_groups(students: list[RunRecord], keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """Settings groups over what the axes leave: runs that differ beyond the sweep are never blended."""
    return settings_groups([SimpleNamespace(run_id=r.run_id, spec=without_axes(r.spec, keys)) for r in students])


def _teacher_stop(r: RunRecord) -> float | None:
    meta = (r.metrics.get("teachers") or [{}])[0]
    return (meta.get("defect") or {}).get("val_accuracy")


def sweeps(records: list[RunRecord], axes: dict[str, list], metric: str) -> list[Sweep]:
    """One :class:`Sweep` per axis that some finished KD student has a value on."""
    bounds = METRICS[metric][1]
    higher = METRICS[metric][2]
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.spec is not None]
    keys = list(axes)
    out = []
    for key, declared in axes.items():
        mine = [r for r in students if axis_value(r.spec, key) is not None]
        if not mine:
            continue
        groups, notes = _settings_groups(mine, keys)
        others = [k for k in keys if k != key and any(axis_value(r.spec, k) is not None for r in mine)]
        values = _ordered(declared, [norm(axis_value(r.spec, key)) for r in mine])
        cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
        for r in mine:
            rest = tuple(value_text(v) if (v := axis_value(r.spec, k)) is not None else "" for k in others)
            cells[(groups[r.run_id], r.strategy, r.teacher_label, r.model, rest)][norm(axis_value(r.spec, key))]\
                .append(r)
        rows = []
        for (group, strategy, teacher, student, rest), at in sorted(cells.items(), key=lambda kv: _order(kv[0])):
            row = SweepRow(group, strategy, teacher, student,
                           {label(k): v or None for k, v in zip(others, rest)})  # None: the axis does not apply
            for v, runs in at.items():
                row.gain[v] = _test_gain(runs, by_id, metric)
                row.val[v] = summarize([r.metric("val", metric) for r in runs], bounds=bounds)
                stops = [x for r in runs if (x := _teacher_stop(r)) is not None]
                if key == "kd.defect_acc" and stops:
                    row.teacher_stop[v] = summarize(stops, bounds=(0.0, 1.0))
            row.best = _pick(row.val, values, higher)
            rows.append(row)
        out.append(Sweep(key, values, metric, rows, notes))
    return out


def sweep_table(sweep: Sweep) -> Table:
    label_ = METRICS[sweep.metric][0]
    lab = sweep.label
    texts = [value_text(v) for v in sweep.values]
    grouped = any(r.group for r in sweep.rows)
    others = list(sweep.rows[0].others) if sweep.rows else []
    stops = any(r.teacher_stop for r in sweep.rows)
    columns = ((["settings"] if grouped else []) + ["strategy", "teacher", "student", *others]
               + [f"gain {lab}={t}" for t in texts] + [f"val {lab}={t}" for t in texts]
               + ([f"teacher at stop {lab}={t}" for t in texts] if stops else [])
               + ["best on val", "gain at best"])
    key = sweep.key.replace(".", "_")
    table = Table(f"sweep_{key}", f"Sweep over {lab} ({sweep.key}): the student's test {label_} gain over its "
                  "baseline at each value (mean ± std [95% CI] over seeds, paired by seed), its val "
                  f"{label_} at each value, and the best value: chosen on val, its gain reported on test",
                  columns, notes=list(sweep.notes), text=("strategy", *others, "best on val"), axis=lab)
    for r in sweep.rows:
        row = ([r.group] if grouped else []) + [r.strategy, r.teacher, r.student, *r.others.values()]
        row += [r.gain.get(v) for v in sweep.values] + [r.val.get(v) for v in sweep.values]
        row += [r.teacher_stop.get(v) for v in sweep.values] if stops else []
        row += [value_text(r.best) if r.best is not None else "–", r.gain.get(r.best) if r.best is not None else None]
        table.rows.append(row)
    better = "highest" if METRICS[sweep.metric][2] else "lowest"
    table.notes.append(f"Best on val: the value whose student has the {better} mean val {label_} over seeds (the first "
                       "on a tie); test never takes part in the choice, its gain is only reported.")
    if stops:
        table.notes.append("teacher at stop: the defective teacher's val accuracy where it first reached the "
                           "threshold (mean over seeds); a teacher that never reached it stops at its last epoch "
                           "(the models table counts those that reached it).")
    return table


def best_table(records: list[RunRecord], axes: dict[str, list], metric: str) -> Table | None:
    """With several axes: per strategy, teacher and student, the best combination chosen on val, reported on test."""
    keys = list(axes)
    if len(keys) < 2:
        return None
    bounds = METRICS[metric][1]
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.spec is not None
                and any(axis_value(r.spec, k) is not None for k in keys)]
    if not students:
        return None
    groups, notes = _settings_groups(students, keys)
    grouped = any(groups.values())
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in students:
        point = {k: v for k in keys if (v := axis_value(r.spec, k)) is not None}
        cells[(groups[r.run_id], r.strategy, r.teacher_label, r.model)][point_text(point)].append(r)
    label_ = METRICS[metric][0]
    table = Table("sweep_best", f"Every axis at once: per strategy, teacher and student, the combination with the "
                  f"best mean val {label_} (chosen on val), its val and test {label_} and its test gain over the "
                  "baseline (mean ± std [95% CI] over seeds, paired by seed)",
                  (["settings"] if grouped else []) + ["strategy", "teacher", "student", "best on val", "combinations",
                                                       "val at best", "test at best", "gain at best"],
                  notes=list(notes), text=("strategy", "best on val", "combinations"))
    for (group, strategy, teacher, student), at in sorted(cells.items(), key=lambda kv: _order(kv[0])):
        val = {p: summarize([r.metric("val", metric) for r in runs], bounds=bounds) for p, runs in at.items()}
        best = _pick(val, list(at), METRICS[metric][2])
        runs = at.get(best, [])
        table.rows.append(([group] if grouped else []) + [
            strategy, teacher, student, best or "–", str(len(at)), val.get(best),
            summarize([r.metric("test", metric) for r in runs], bounds=bounds), _test_gain(runs, by_id, metric)])
    return table


def add_sweeps(tables: Tables, records: list[RunRecord], axes: dict[str, list], metric: str) -> None:
    """A swept study's tables, after its students' tables (with their notes): one per axis, and the best
    combination with several axes. ``tables.sweeps`` keeps what the figures draw."""
    tables.sweeps = sweeps(records, axes, metric)
    extra = [sweep_table(s) for s in tables.sweeps]
    best = best_table(records, axes, metric)
    extra += [best] if best is not None else []
    for t in extra:
        cell_notes(t, tables.synthetic)
    at = max((i + 1 for i, t in enumerate(tables.tables) if t.name.startswith("students_")), default=len(tables.tables))
    tables.tables[at:at] = extra


def write_sweep_figures(tables: Tables, out_dir: Path) -> list[Path]:
    """``gain_<axis>.png`` per axis beside a swept study's tables; returns the paths written."""
    from . import figures as F  # matplotlib (0.3 s): only where figures are written

    label_ = METRICS[tables.metric][0]
    return [F.save_png(F.sweep_figure(s, label_), Path(out_dir) / f"gain_{s.key.replace('.', '_')}.png")
            for s in tables.sweeps if s.rows]
