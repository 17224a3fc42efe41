"""A sweep's tables: the gain over the baseline against each swept setting, and the best value (no torch).

Per axis, one table (``sweep_<axis>``): a row per strategy, teacher, student and value of the other axes; at each
value of the axis the student's test gain over its baseline (paired by seed, with its interval) and its val
metric; then the best value and its test gain, two ways.

Choices without luck:

- **The best value** is chosen on validation only, on the seeds that every value has finished (with their
  baselines), from the val gain paired by seed: a value finished on one lucky seed never beats one finished on
  two, and a ``kd.*`` value and a ``data.image_size`` value (whose baselines differ) are judged alike. A tie is
  marked ("tie: ...").
- **Gain at best (held out)** chooses leave-one-seed-out: for each shared seed, the best value on the *other*
  seeds' val gain, and that seed's test gain at it. Its mean is unbiased where the plain choice is not (the best
  of K values on val flatters its test gain with no true effect; measured +0.62 points over 4 values and 3
  seeds). It is the tested cell.
- **Gain at best (plain)**: the test gain at the value chosen on all seeds, beside it and labelled optimistic;
  never marked.

Swept over ``kd.defect_acc``, the table also shows each defective teacher's val accuracy at its stop and how many
teachers reached the threshold ("reached k/n"): a threshold never reached is a teacher that stopped at its last
epoch, not at the threshold.

With several axes, ``sweep_best`` picks the best combination per strategy, teacher and student the same way.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .. import strategy_catalog as catalog
from ..study.axes import axis_value, label, norm, point_text, value_text
from ..store.records import RunRecord
from .groups import Groups, study_groups
from .intervals import StatsOptions, gain_summary, paired, value_summary
from .stats import Summary, summarize
from .table_model import CELLS, METRICS, Best, Count, Table, Tables, cell_notes


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
    reached: dict = field(default_factory=dict)  # value -> (teachers that reached the threshold, teachers)
    choice: "Choice | None" = None  # the best value, chosen on val (plain and held out)
    points: list = field(default_factory=list)  # (value, seed, teacher's val accuracy, test gain) per student

    @property
    def best(self):
        return self.choice.best if self.choice is not None else None

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


@dataclass
class Choice:
    """The best of a sweep's values (or combinations) for one row, chosen on val, reported on test."""
    best: object  # chosen on every shared seed
    ties: list  # the other values whose val gain equals the best's
    seeds: list  # the seeds every value has finished (with its baseline)
    plain: Summary | None  # the test gain at ``best``: selected on the same seeds' val, optimistic, never marked
    held_out: Summary | None  # leave-one-seed-out: per seed, the best on the other seeds, that seed's test gain

    def text(self, show=lambda v: str(v)) -> str:
        return str(self.typed(show))

    def typed(self, show=lambda v: str(v)) -> Best:
        """The choice as a table cell: written "2 (tie: 4)", its CSV the value, whether tied, and with what."""
        if self.best is None:
            return Best(None)
        return Best(self.best, tuple(self.ties), show(self.best), tuple(show(v) for v in self.ties))


def _val_gains(pairs: list[tuple[RunRecord, RunRecord]], metric: str) -> dict[int, tuple[float, tuple]]:
    """seed -> (val gain over the baseline, the (student, baseline) pair)."""
    out = {}
    for r, b in pairs:
        mine, theirs = r.metric("val", metric), b.metric("val", metric)
        if mine is not None and theirs is not None and r.seed is not None:
            out[r.seed] = (mine - theirs, (r, b))
    return out


def _best_of(gains: dict, seeds: list, higher: bool) -> tuple[object, list]:
    """(the value with the best mean val gain over ``seeds``, the other values tied with it)."""
    means = {v: sum(g[s][0] for s in seeds) / len(seeds) for v, g in gains.items()}
    top = max(means.values()) if higher else min(means.values())
    tied = [v for v, m in means.items() if abs(m - top) <= 1e-12]
    return tied[0], tied[1:]


def choose(at: dict, by_id: dict[str, RunRecord], metric: str, opts: StatsOptions) -> Choice | None:
    """The best of ``at`` (value -> its finished students, in order) on val, on the seeds every value shares."""
    higher = METRICS[metric][2]
    gains = {v: _val_gains(paired(runs, by_id), metric) for v, runs in at.items()}
    gains = {v: g for v, g in gains.items() if g}
    if not gains:
        return None
    seeds = sorted(set.intersection(*(set(g) for g in gains.values())))
    if not seeds:
        return Choice(None, [], [], None, None)
    best, ties = _best_of(gains, seeds, higher)
    plain = gain_summary([gains[best][s][1] for s in seeds], "test", metric, opts, test=False)
    held_out = None
    if len(seeds) >= 2:
        picks = [gains[_best_of(gains, [o for o in seeds if o != s], higher)[0]][s][1] for s in seeds]
        held_out = gain_summary(picks, "test", metric, opts, test=True)
    return Choice(best, ties, seeds, plain, held_out)


def _order(key: tuple) -> tuple:
    """Rows in the catalogue's order of strategies (normal, reverse, defective ...), then by name."""
    group, strategy, *rest = key
    return (group, catalog.names().index(strategy) if strategy in catalog.CATALOGUE else 99, strategy, *rest)


def _teacher_defect(r: RunRecord) -> dict:
    return ((r.metrics.get("teachers") or [{}])[0].get("defect") or {})


def _rest(groups: Groups, students: list[RunRecord]) -> tuple[dict[str, str], list[str]]:
    """The letter of what differs beyond the axes, per run ("" where they share it all), and its notes: a sweep's
    row holds every value of its axis, so its runs share all else (the same letters every output uses)."""
    letters = {r.run_id: groups.rest.get(r.run_id, "") for r in students}
    if len(set(letters.values())) <= 1:
        return {i: "" for i in letters}, []
    return letters, [groups.notes[k] for k in sorted(set(letters.values())) if k in groups.notes]


def sweeps(records: list[RunRecord], axes: dict[str, list], metric: str,
           opts: StatsOptions = StatsOptions(), groups: Groups | None = None) -> list[Sweep]:
    """One :class:`Sweep` per axis that some finished KD student has a value on."""
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.spec is not None]
    keys = list(axes)
    groups = groups if groups is not None else study_groups(records, keys)
    out = []
    for key, declared in axes.items():
        mine = [r for r in students if axis_value(r.spec, key) is not None]
        if not mine:
            continue
        groups_, notes = _rest(groups, mine)
        others = [k for k in keys if k != key and any(axis_value(r.spec, k) is not None for r in mine)]
        values = _ordered(declared, [norm(axis_value(r.spec, key)) for r in mine])
        cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
        for r in mine:
            rest = tuple(value_text(v) if (v := axis_value(r.spec, k)) is not None else "" for k in others)
            cells[(groups_[r.run_id], r.strategy, r.teacher_label, r.model, rest)][norm(axis_value(r.spec, key))]\
                .append(r)
        rows = []
        for (group, strategy, teacher, student, rest), at in sorted(cells.items(), key=lambda kv: _order(kv[0])):
            row = SweepRow(group, strategy, teacher, student,
                           {label(k): v or None for k, v in zip(others, rest)})  # None: the axis does not apply
            at = {v: at[v] for v in values if v in at}  # in the axis's order: a tie goes to the first declared
            for v, runs in at.items():
                pairs = paired(runs, by_id)
                row.gain[v] = gain_summary(pairs, "test", metric, opts) if pairs else None
                row.val[v] = value_summary(runs, "val", metric, opts)
                defects = [d for r in runs if (d := _teacher_defect(r))]
                if key == "kd.defect_acc" and defects:
                    row.teacher_stop[v] = summarize([d.get("val_accuracy") for d in defects], bounds=(0.0, 1.0),
                                                    seeds=[r.seed for r in runs if _teacher_defect(r)])
                    row.reached[v] = (sum(bool(d.get("reached")) for d in defects), len(defects))
                for r, b in pairs:
                    g = r.metric("test", metric), b.metric("test", metric)
                    if None not in g:
                        row.points.append((v, r.seed, _teacher_defect(r).get("val_accuracy")
                                           or ((r.metrics.get("teachers") or [{}])[0].get("val_accuracy")),
                                           g[0] - g[1]))
            row.choice = choose(at, by_id, metric, opts)
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
    reached = [f"reached {lab}={t}" for t in texts] if stops else []
    columns = ((["settings"] if grouped else []) + ["strategy", "teacher", "student", *others]
               + [f"gain {lab}={t}" for t in texts] + [f"val {lab}={t}" for t in texts]
               + ([f"teacher at stop {lab}={t}" for t in texts] if stops else []) + reached
               + ["best on val", "shared seeds", "gain at best (held out)", "gain at best (plain, optimistic)"])
    key = sweep.key.replace(".", "_")
    table = Table(f"sweep_{key}", f"Sweep over {lab} ({sweep.key}): the student's test {label_} gain over its "
                  f"baseline at each value ({CELLS}; paired by seed and test image), its val {label_} at each value, "
                  "and the best value: chosen on val (in bold), its gain reported on test",
                  columns, notes=list(sweep.notes), text=("strategy", *others, "best on val", "shared seeds",
                                                          *reached), axis=lab)
    for r in sweep.rows:
        row = ([r.group] if grouped else []) + [r.strategy, r.teacher, r.student, *r.others.values()]
        row += [r.gain.get(v) for v in sweep.values] + [r.val.get(v) for v in sweep.values]
        row += [r.teacher_stop.get(v) for v in sweep.values] if stops else []
        row += [Count(*r.reached[v]) if v in r.reached else "–" for v in sweep.values] if stops else []
        c = r.choice
        row += [c.typed(value_text) if c else Best(None), len(c.seeds) if c else 0,
                c.held_out if c else None, c.plain if c else None]
        if c is not None and c.best is not None:  # the value chosen on val, never the best on test
            table.emphasis.add((len(table.rows), table.columns.index(f"gain {lab}={value_text(c.best)}")))
        table.rows.append(row)
    better = "highest" if METRICS[sweep.metric][2] else "lowest"
    table.notes.append(
        f"Best on val: the value with the {better} val {label_} gain over the baseline, paired by seed, on the "
        "seeds every value has finished (shared seeds); a tie is marked and goes to the first value. Test never "
        "takes part in the choice. Gain at best (held out): leave-one-seed-out, each shared seed's test gain at "
        "the value chosen on the other seeds' val (unbiased; tested). Gain at best (plain): the test gain at the "
        "value chosen on all of them, optimistic by selection, never marked.")
    if stops:
        table.notes.append("teacher at stop: the defective teacher's val accuracy where it first reached the "
                           "threshold (mean over seeds); reached k/n: how many of its teachers reached it. A "
                           "teacher that never reached it stops at its last epoch: its student learned from that "
                           "teacher, not from one at the threshold (gain_vs_teacher_kd_defect_acc.png plots the "
                           "gain against the accuracy reached).")
    return table


def best_table(records: list[RunRecord], axes: dict[str, list], metric: str,
               opts: StatsOptions = StatsOptions(), groups: Groups | None = None) -> Table | None:
    """With several axes: per strategy, teacher and student, the best combination chosen on val, reported on test."""
    keys = list(axes)
    if len(keys) < 2:
        return None
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.spec is not None
                and any(axis_value(r.spec, k) is not None for k in keys)]
    if not students:
        return None
    groups_, notes = _rest(groups if groups is not None else study_groups(records, keys), students)
    grouped = any(groups_.values())
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    combos: dict[str, dict] = {}  # a combination's text -> its values, by the axes' labels (the CSV's columns)
    for r in students:
        point = {k: v for k in keys if (v := axis_value(r.spec, k)) is not None}
        cells[(groups_[r.run_id], r.strategy, r.teacher_label, r.model)][point_text(point)].append(r)
        combos[point_text(point)] = {label(k): norm(v) for k, v in point.items()}
    label_ = METRICS[metric][0]
    table = Table("sweep_best", f"Every axis at once: per strategy, teacher and student, the combination with the "
                  f"best val {label_} gain (chosen on val, on the seeds every combination shares), its val and test "
                  f"{label_} and its test gain over the baseline ({CELLS}; paired by seed and test image)",
                  (["settings"] if grouped else []) + ["strategy", "teacher", "student", "best on val", "combinations",
                                                       "shared seeds", "val at best", "test at best",
                                                       "gain at best (held out)", "gain at best (plain, optimistic)"],
                  notes=list(notes), text=("strategy", "best on val", "combinations", "shared seeds"))
    for (group, strategy, teacher, student), at in sorted(cells.items(), key=lambda kv: _order(kv[0])):
        c = choose(dict(at), by_id, metric, opts)
        runs = at.get(c.best, []) if c else []
        table.rows.append(([group] if grouped else []) + [
            strategy, teacher, student, Best(combos[c.best], tuple(c.ties), c.best, tuple(c.ties))
            if c and c.best is not None else Best(None), len(at), len(c.seeds) if c else 0,
            value_summary(runs, "val", metric, opts) if runs else None,
            value_summary(runs, "test", metric, opts) if runs else None,
            c.held_out if c else None, c.plain if c else None])
    table.notes.append("Chosen as in the sweep tables: on val gain, on shared seeds; held out: leave-one-seed-out "
                       "(tested); plain: optimistic, never marked.")
    return table


def add_sweeps(tables: Tables, records: list[RunRecord], axes: dict[str, list], metric: str,
               opts: StatsOptions = StatsOptions(), groups: Groups | None = None) -> None:
    """A swept study's tables, after its students' tables (with their notes): one per axis, and the best
    combination with several axes. ``tables.sweeps`` keeps what the figures draw."""
    tables.sweeps = sweeps(records, axes, metric, opts, groups)
    extra = [sweep_table(s) for s in tables.sweeps]
    best = best_table(records, axes, metric, opts, groups)
    extra += [best] if best is not None else []
    for t in extra:
        cell_notes(t, tables.synthetic)
    at = max((i + 1 for i, t in enumerate(tables.tables) if t.name.startswith("students_")), default=len(tables.tables))
    tables.tables[at:at] = extra


def write_sweep_figures(tables: Tables, out_dir: Path) -> list[Path]:
    """``gain_<axis>.png`` per axis beside a swept study's tables; returns the paths written."""
    from . import figures as F  # matplotlib (0.3 s): only where figures are written

    label_ = METRICS[tables.metric][0]
    out = [F.save_png(F.sweep_figure(s, label_), Path(out_dir) / f"gain_{s.key.replace('.', '_')}.png")
           for s in tables.sweeps if s.rows]
    out += [F.save_png(F.teacher_gain_figure(s, label_), Path(out_dir) / f"gain_vs_teacher_{s.key.replace('.', '_')}.png")
            for s in tables.sweeps if s.key == "kd.defect_acc" and any(p[2] is not None for r in s.rows
                                                                       for p in r.points)]
    return out
