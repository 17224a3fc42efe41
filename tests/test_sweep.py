"""Sweeps: settings as axes of a study (product, zip, per block, --set), reuse of baselines and teachers, the
sweep tables (axis columns, gain per value, best chosen on val and reported on test), figures, the report, the
TUI's axis selector, and a two-axis sweep trained end to end."""
from __future__ import annotations

import asyncio
import csv
from collections import Counter

import pytest

from kdengine.cli import main
from kdengine.errors import UsageError
from kdengine.paths import runs_dir
from kdengine.reports.study import study_tables
from kdengine.store import RunStore
from kdengine.store.queue import enqueue
from kdengine.study.axes import axis_value
from kdengine.study.expand import expand
from kdengine.study.registry import save_study
from kdengine.study.schema import load_study
from kdtui.store_view import what_cell
from tests.conftest import SMALL_SYNTH
from tests.tui_helpers import _metrics

HEAD = """
name = "sw"
seeds = [0, 1]
[data]
source = "synthetic"
image_size = 32
[train]
epochs = 1
"""
NORMAL = """
[[experiments]]
strategy = "normal"
teachers = ["resnet10t"]
students = ["test_resnet"]
"""
BLOCKS = NORMAL + """
[[experiments]]
strategy = "defective"
teachers = ["resnet10t"]
students = ["test_resnet"]
kd.defect_acc = [0.3, 0.6]
"""


def _study(tmp_path, text: str, sets=None):
    path = tmp_path / "sw.toml"
    path.write_text(text)
    return load_study(str(path), sets)


def _count(plan):
    return Counter(p.run_id.split("-")[0] + ("+" if "student" in p.roles else "") for p in plan)


def test_axes_form_a_product_and_nothing_is_trained_twice(tmp_path):
    study = _study(tmp_path, HEAD + "[kd]\ntemperature = [1, 2, 4]\n" + BLOCKS)
    assert [(a.key, a.values) for a in study.axes] == [("kd.temperature", (1, 2, 4)), ("kd.defect_acc", (0.3, 0.6))]
    plan = expand(study)
    # per seed: one normal teacher and one baseline for every value; a defective teacher per threshold;
    # 3 normal students (T) and 3 x 2 defective students (T x threshold)
    assert _count(plan) == {"ce": 4, "defective": 4, "normal+": 6, "defective+": 12}
    temps = Counter(axis_value(p.spec, "kd.temperature") for p in plan)
    assert temps == {1.0: 6, 2.0: 6, 4.0: 6, None: 8}  # teachers and baselines have no temperature
    assert {axis_value(p.spec, "kd.defect_acc") for p in plan if p.run_id.startswith("normal")} == {None}


def test_zip_pairs_the_axes_and_a_block_overrides_the_top(tmp_path):
    zipped = _study(tmp_path, 'sweep = "zip"\n' + HEAD + '[kd]\ntemperature = [1, 2]\nalpha = [0.5, 0.9]\n' + BLOCKS)
    students = [p.spec for p in expand(zipped) if p.spec.kind == "kd" and p.spec.seed == 0]
    assert sorted((s.strategy, s.kd.temperature, s.kd.alpha) for s in students if s.strategy == "normal") == \
        [("normal", 1.0, 0.5), ("normal", 2.0, 0.9)]
    # the defective block adds its own axis: zip across three axes of equal length fails in one line
    with pytest.raises(UsageError, match="lengths differ: kd.temperature 2, kd.alpha 2, kd.defect_acc 3"):
        _study(tmp_path, 'sweep = "zip"\n' + HEAD + '[kd]\ntemperature = [1, 2]\nalpha = [0.5, 0.9]\n'
               + BLOCKS.replace("[0.3, 0.6]", "[0.3, 0.5, 0.6]"))
    # a block's scalar replaces a top axis for that block only
    study = _study(tmp_path, HEAD + "[kd]\ntemperature = [1, 2]\n" + BLOCKS.replace(
        'kd.defect_acc = [0.3, 0.6]', 'kd.temperature = 8.0'))
    temps = {(p.spec.strategy, p.spec.kd.temperature) for p in expand(study) if p.spec.kind == "kd"}
    assert temps == {("normal", 1.0), ("normal", 2.0), ("defective", 8.0)}


def test_set_makes_an_axis_and_bad_axes_are_one_line(tmp_path, capsys):
    study = _study(tmp_path, HEAD + BLOCKS, sets=["kd.temperature=[1,2,4,8]"])
    assert [a.key for a in study.axes] == ["kd.temperature", "kd.defect_acc"]
    for text, message in [
        (HEAD.replace('source = "synthetic"', 'source = "synthetic"\nsplit_seed = [0, 1]') + BLOCKS,
         "'data.split_seed' cannot be swept"),
        (HEAD + "[kd]\ntemperature = []\n" + BLOCKS, "the axis 'kd.temperature' is an empty list"),
        (HEAD + "[kd]\ntemperature = [2, 2]\n" + BLOCKS, "repeats a value"),
        (HEAD + "[kd]\ntemperature = [2, -1]\n" + BLOCKS, "temperature"),
        ('sweep = "grid"\n' + HEAD + BLOCKS, "'sweep' must be one of product, zip"),
        (HEAD + 'sweep = "zip"\n' + BLOCKS, "'train.sweep': 'sweep' goes at the top of the file"),
        (HEAD + BLOCKS + 'data.cap_train = 10\n', "a block may set only data.image_size, source, color, uncertain"),
    ]:
        (tmp_path / "bad.toml").write_text(text)
        assert main(["study", "run", str(tmp_path / "bad.toml"), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_the_sweep_preset_extends_the_thesis_and_holds_its_grid(capsys):
    grid = {p.run_id for p in expand(load_study("thesis-mura", data="synthetic"))}
    sweep = load_study("thesis-mura-sweep", data="synthetic")
    assert sweep.name == "thesis-mura-sweep" and sweep.train.lr == 0.0001 and sweep.data.image_size == 224
    ids = {p.run_id for p in expand(sweep)}
    assert grid < ids  # the thesis's runs are the T=4, threshold 0.5 point: a finished thesis grid is reused
    assert main(["study", "run", "thesis-mura-sweep", "--dry-run", "--data", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "516 runs over 3 seed(s)" in out and "T=1: 120 runs, 0 finished" in out
    assert "defect threshold=0.7: 102 runs" in out and "on no axis: 18 runs" in out


def test_extends_merges_and_refuses_a_loop(tmp_path):
    (tmp_path / "base.toml").write_text(HEAD + "[kd]\nalpha = 0.5\n" + BLOCKS)
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[kd]\ntemperature = [2, 8]\n')
    child = load_study(str(tmp_path / "child.toml"))
    assert child.name == "child" and child.kd.alpha == 0.5 and [a.key for a in child.axes][0] == "kd.temperature"
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(UsageError, match="more than 4 studies deep"):
        load_study(str(tmp_path / "a.toml"))


def _fake_sweep(tmp_path, val: dict, test: dict, base_test: float = 0.5):
    """A finished two-seed T sweep with chosen val and test accuracies per temperature (no training)."""
    study = _study(tmp_path, HEAD + "[kd]\ntemperature = [1, 2]\n" + NORMAL)
    store = RunStore(tmp_path / "runs")
    plan = expand(study)
    save_study(store, study, plan)
    for p in plan:
        enqueue(store, p.spec)
        t = axis_value(p.spec, "kd.temperature")
        acc = test[t] + 0.01 * p.spec.seed if t is not None else base_test + 0.01 * p.spec.seed
        m = _metrics(p.run_id, acc)
        m["val"] = dict(m["val"], accuracy=val[t] if t is not None else 0.5)
        store.claim(p.run_id, "fake")
        store.write_metrics(p.run_id, m)
        store.finish(p.run_id, "finished")
    return store


def test_the_best_value_is_chosen_on_val_and_reported_on_test(tmp_path):
    # T=1 is best on val, T=2 on test: the table must pick T=1 and report T=1's test gain
    store = _fake_sweep(tmp_path, val={1.0: 0.70, 2.0: 0.60}, test={1.0: 0.55, 2.0: 0.80})
    tables = study_tables(store, "sw")
    t = tables.get("sweep_kd_temperature")
    row = dict(zip(t.columns, t.rows[0]))
    assert str(row["best on val"]) == "1" and row["gain at best (plain, optimistic)"].mean == pytest.approx(0.05)
    assert row["shared seeds"] == 2 and row["gain at best (plain, optimistic)"].p_adj is None  # never marked
    # held out: each seed's test gain at the value chosen on the other seed's val (T=1 both times here)
    held = row["gain at best (held out)"]
    assert held.mean == pytest.approx(0.05) and held.std == 0 and not held.has_interval and not held.tested  # no spread
    assert row["gain T=2"].mean == pytest.approx(0.30) and row["gain T=2"].n == 2
    assert row["val T=1"].mean == pytest.approx(0.70)
    # the long table carries the swept setting as a column; empty for the teacher and the baseline
    long = tables.long[tables.long["split"] == "test"]
    assert sorted(long["kd.temperature"].dropna().tolist()) == [1.0, 1.0, 2.0, 2.0]
    assert long.loc[long["kind"] == "ce", "kd.temperature"].isna().all()


def test_a_two_axis_sweep_end_to_end(tmp_path, capsys):
    """T in {2, 4} over normal and defective KD, the defect threshold in {0.3, 0.6} on the defective block (a
    product there), one seed (intervals over seeds: test_the_best_value_is_chosen_on_val...), tiny models at 32 px
    for 1 epoch, trained for real: runs, tables, figures, the report and the TUI's table."""
    root = tmp_path
    (root / "sw.toml").write_text(HEAD.replace('"synthetic"', f'"{SMALL_SYNTH}"').replace("[0, 1]", "[0]")
                                  + "batch_size = 32\n"
                                  + "[kd]\ntemperature = [2, 4]\n" + BLOCKS)
    assert main(["study", "run", str(root / "sw.toml"), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "study sw: 10/10 runs finished" in out
    # each run's line names its point (issue 26): the two normal students no longer read alike
    assert "normal: resnet10t -> test_resnet (seed 0, T=2)" in err and "(seed 0, T=4)" in err
    store = RunStore(runs_dir())
    # trained once each: 1 baseline, 1 normal teacher, 2 defective teachers, 2 normal and 4 defective students
    starts = {r: sum(e["type"] == "start" for e in store.read_events(r)[0]) for r in store.list_ids()}
    assert set(starts.values()) == {1}
    assert Counter(r.split("-")[0] for r in starts) == {"ce": 2, "defective": 6, "normal": 2}
    # the dry run now marks every run finished, per axis value
    assert main(["study", "run", str(root / "sw.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "10 of 10 already finished" in out and "T=2: 3 runs, 3 finished" in out
    assert "defect threshold=0.6: 3 runs, 3 finished" in out
    # tables: the swept settings as columns of the long table; per axis the gain per value and the best on val
    out_dir = root / "tables"
    assert main(["study", "table", "sw", "--out", str(out_dir)]) == 0
    capsys.readouterr()
    runs = list(csv.DictReader(open(out_dir / "runs.csv")))
    assert {"kd.temperature", "kd.defect_acc"} <= set(runs[0])
    assert {(r["strategy"], r["kd.temperature"], r["kd.defect_acc"]) for r in runs if r["kind"] == "kd"} == {
        ("normal", "2.000000", ""), ("normal", "4.000000", ""), ("defective", "2.000000", "0.300000"),
        ("defective", "2.000000", "0.600000"), ("defective", "4.000000", "0.300000"),
        ("defective", "4.000000", "0.600000")}
    sweep_t = list(csv.DictReader(open(out_dir / "sweep_kd_temperature.csv")))  # long: one row per cell
    rows: dict[tuple, dict] = {}
    for r in sweep_t:
        rows.setdefault((r["strategy"], r["defect_threshold"]), {})[r["column"]] = r
    assert list(rows) == [("normal", ""), ("defective", "0.3"), ("defective", "0.6")]
    for cells in rows.values():  # the best has the highest val gain (one baseline: the highest val accuracy)
        means = {t: float(cells[f"val T={t}"]["mean"]) for t in ("2", "4")}
        best = "2" if means["2"] >= means["4"] else "4"
        first = next(iter(cells.values()))
        assert float(first["best_on_val"]) == float(best) and first["tie"] == str(means["2"] == means["4"])
        assert first["tied_with"] == ("4" if means["2"] == means["4"] else "")
        plain = cells["gain at best (plain, optimistic)"]
        assert plain["mean"] == cells[f"gain T={best}"]["mean"] and cells["gain T=2"]["n_seeds"] == "1"
        assert "gain at best (held out)" not in cells  # one seed: nothing to hold out
    defect = list(csv.DictReader(open(out_dir / "sweep_kd_defect_acc.csv")))
    assert {r["strategy"] for r in defect} == {"defective"} and len({r["T"] for r in defect}) == 2
    assert "teacher at stop defect threshold=0.3" in {r["column"] for r in defect}
    # a threshold the defective teacher never reached says so: reached k of n of its teachers, as numbers
    assert {r["reached_defect_threshold=0.3_of"] for r in defect} == {"1"}
    assert {r["reached_defect_threshold=0.3"] for r in defect} <= {"0", "1"}
    assert {p.name for p in out_dir.glob("gain_*.png")} == {"gain_kd_temperature.png", "gain_kd_defect_acc.png",
                                                           "gain_vs_teacher_kd_defect_acc.png"}
    assert (out_dir / "sweep_best.csv").is_file()
    # the report draws the gain against each axis
    assert main(["report", "sw", "--out", str(root / "report")]) == 0
    page = (root / "report" / "report.html").read_text()
    assert "<h2>Sweeps</h2>" in page and "gain over the baseline against T (kd.temperature)" in page
    asyncio.run(_tui_sweep_tab(store))


async def _tui_sweep_tab(store):
    """Results, the study's view: one sweep tab; `a` goes through the axes and the best combination."""
    from kdtui.app import KDStudyApp
    from tests.tui_helpers import wait_for

    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ResultsScreen", timeout=10)
        screen = app.screen
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.view_name == "sw" and "sweep" in screen.order, timeout=30)
        seen = []
        for _ in range(3):
            await pilot.press("a")
            table = screen.query_one("#results-table")
            seen.append([str(c.label) for c in table.columns.values()])
            assert "sweep: " in str(screen.query_one("#strategy-bar").render())
        # a point is labelled as the CLI and the report label it (issue 26): "gain T=2", never "gain 2"
        assert seen[0][:4] == ["strategy", "teacher", "student", "defect threshold"] and "gain T=2" in seen[0]
        assert seen[1][3] == "T" and "teacher at stop defect threshold=0.3" in seen[1]
        assert "gain defect threshold=0.6" in seen[1]
        # the run list tells the two normal students apart by their point, at 100 columns (no run id shown)
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen" and app.screen.rows, timeout=10)
        normal = [r for r in app.screen.rows.values() if r.what == "normal"]
        assert sorted(r.point for r in normal) == ["T=2", "T=4"]
        assert sorted(what_cell(r) for r in normal) == ["normal T=2", "normal T=4"]
        assert "best on val" in seen[2] and "gain at best (held out)" in seen[2]


def test_a_sweep_of_a_setting_a_block_does_not_read_trains_it_once_and_says_so(capsys, tmp_path):
    """Issue 38's case: [kd] temperature = [2, 4] with a tf-reg block (tf-reg's T is its virtual teacher's own)
    trained two identical tf-reg runs per seed. Now each unread point is the same run, on no point of that axis,
    and the study says so; the same for Adam and a momentum sweep."""
    path = tmp_path / "s.toml"
    path.write_text('seeds = [0, 1]\n[kd]\ntemperature = [2, 4]\n[train]\nmomentum = [0.9, 0.5]\n'
                    '[[experiments]]\nstrategy = "tf-reg"\nstudents = ["test_resnet"]\n'
                    '[[experiments]]\nstrategy = "normal"\nteachers = ["resnet10t"]\nstudents = ["test_resnet"]\n'
                    '[[experiments]]\nstrategy = "baseline"\nstudents = ["test_resnet"]\n')
    plan = expand(load_study(str(path)))
    tf_reg = [p for p in plan if p.spec.strategy == "tf-reg"]
    normal = [p for p in plan if p.spec.strategy == "normal"]
    assert len(tf_reg) == 2 and len(normal) == 4  # one per seed; normal KD reads T: two per seed (Adam: no momentum)
    assert all(axis_value(p.spec, "kd.temperature") is None and axis_value(p.spec, "train.momentum") is None
               for p in tf_reg)
    assert main(["study", "run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "note: kd.temperature does not change the tf-reg block's hinton students" in out
    assert "note: train.momentum does not change the normal block's hinton students" in out
    # a baseline block reads no [kd] setting: said too, in one line, and its students train once per seed
    assert "note: kd.temperature does not change the baseline block's students (they do not read it)" in out
    assert sum(p.spec.kind == "ce" and p.spec.model == "test_resnet" for p in plan) == 2
