"""The comparison tables: exact baseline pairing, one group per settings, never a blend (the mixed-settings bug)."""
from __future__ import annotations

import csv

import pytest

from kdengine.cli import main
from kdengine.store.records import collect
from kdengine.reports.tables import build
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.engine_helpers import train
from tests.tui_helpers import fake_finished_store


def _cells(table, student="test_resnet", split="test"):
    rows = [dict(zip(table.columns, r)) for r in table.rows if r[table.columns.index("student")] == student
            and r[table.columns.index("split")] == split]
    return rows


def test_two_settings_are_two_groups_with_their_own_gains(tmp_path):
    """The bug: a KD run at 2 epochs (gain -0.04) and one at 1 epoch (gain +0.10) were averaged into one cell
    with a blended baseline. Each must keep its own baseline and gain, in its own settings group."""
    root = tmp_path / "runs"
    fake_finished_store(root, teacher="resnet18", epochs=2, accuracies=(0.80, 0.74, 0.70))
    fake_finished_store(root, teacher="resnet18", epochs=1, accuracies=(0.60, 0.50, 0.60))
    tables = build(collect(RunStore(root)))
    normal = tables.get("students_normal")
    assert normal.columns[0] == "settings"
    rows = _cells(normal)
    assert len(rows) == 2
    by_group = {r["settings"]: r for r in rows}
    # one note per group says what differs: the students' epochs (and so their teachers')
    said = {n.split(":")[0].removeprefix("settings "): n for n in normal.notes if n.startswith("settings ")}
    assert set(said) == set(by_group)
    group_of_2 = next(g for g, n in said.items() if "train.epochs=2" in n)
    two, one = by_group[group_of_2], by_group[next(g for g in said if g != group_of_2)]
    assert two["resnet18"].mean == pytest.approx(0.70) and two["baseline"].mean == pytest.approx(0.74)
    assert two["gain resnet18"].mean == pytest.approx(-0.04) and two["gain resnet18"].n == 1
    assert one["resnet18"].mean == pytest.approx(0.60) and one["baseline"].mean == pytest.approx(0.50)
    assert one["gain resnet18"].mean == pytest.approx(0.10)
    # the models table keeps the two teacher settings apart too
    models = tables.get("models")
    assert models.columns[0] == "settings"
    teachers = [dict(zip(models.columns, r)) for r in models.rows if r[models.columns.index("model")] == "resnet18"]
    assert sorted(t["test"].mean for t in teachers) == pytest.approx([0.60, 0.80])


def test_one_settings_has_no_settings_column(tmp_path):
    root = tmp_path / "runs"
    fake_finished_store(root, seed=0, accuracies=(0.8, 0.70, 0.75))
    fake_finished_store(root, seed=1, accuracies=(0.8, 0.72, 0.71))
    normal = build(collect(RunStore(root))).get("students_normal")
    assert "settings" not in normal.columns
    (row,) = _cells(normal)
    assert row["resnet18"].n == 2 and row["baseline"].n == 2
    assert row["gain resnet18"].mean == pytest.approx(((0.75 - 0.70) + (0.71 - 0.72)) / 2)
    assert row["gain resnet18"].has_interval


def test_a_kd_run_without_its_own_baseline_gets_no_gain(tmp_path):
    """A finished plain run of the same model under other settings is not its baseline."""
    root = tmp_path / "runs"
    store, student, baseline = fake_finished_store(root, epochs=2)
    import shutil

    fake_finished_store(tmp_path / "other", epochs=1)
    shutil.rmtree(store.run_dir(baseline.run_id))  # the 2-epoch student loses its own baseline
    other = RunStore(tmp_path / "other")
    for rid in other.list_ids():  # bring in the 1-epoch runs except the KD student
        if not rid.startswith("normal-"):
            shutil.copytree(other.run_dir(rid), store.run_dir(rid))
    normal = build(collect(store)).get("students_normal")
    (row,) = _cells(normal)
    assert row["baseline"] is None and row["gain resnet18"] is None


def test_metric_choice_changes_the_cells(tmp_path):
    store, student, baseline = fake_finished_store(tmp_path / "runs")
    ece = build(collect(store), metric="ece").get("students_normal")
    (row,) = _cells(ece)
    assert row["resnet18"].mean == pytest.approx(0.05) and row["gain resnet18"].mean == pytest.approx(0.0)
    assert any("Lower ECE is better" in n for n in ece.notes)


def test_kdengine_table_on_real_runs_with_two_settings(capsys, tmp_path):
    """The issue's reproduction through the CLI: two `kdengine train` calls at different epochs."""
    long, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet")
    short, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet",
                     "--epochs", "1")
    out = tmp_path / "tables"
    assert main(["table", "--out", str(out), "--format", "both"]) == 0
    printed = capsys.readouterr().out
    assert "runs.csv" in printed and "students_normal.csv" in printed
    runs = {(r["run_id"], r["split"]): r for r in csv.DictReader(open(out / "runs.csv"))}
    for m in (long, short):
        row = runs[(m["run_id"], "test")]
        base = runs[(row["baseline_run_id"], "test")]
        assert float(row["gain"]) == pytest.approx(m["test"]["accuracy"] - float(base["accuracy"]), abs=1e-5)
        assert base["role"] in ("baseline", "baseline+teacher")
    assert runs[(long["run_id"], "test")]["baseline_run_id"] != runs[(short["run_id"], "test")]["baseline_run_id"]
    cells = list(csv.DictReader(open(out / "students_normal.csv")))  # long: one row per cell
    tests = [w for w in cells if w["split"] == "test" and w["column"] == "gain test_efficientnet"]
    assert len(tests) == 2 and {w["settings"] for w in tests} == {"A", "B"}
    assert {(w["quantity"], w["of"]) for w in tests} == {("gain", "test_efficientnet")}
    gains = {w["settings"]: float(w["mean"]) for w in tests}
    # one label everywhere: runs.csv names each run's settings group as the table does
    expected = {runs[(m["run_id"], "test")]["settings"]: float(runs[(m["run_id"], "test")]["gain"])
                for m in (long, short)}
    assert gains == pytest.approx(expected, abs=1e-4)
    assert "train.epochs" in (out / "students_normal.md").read_text()
    # every finished run wrote its per-image val and test predictions, and they agree with metrics.json exactly
    from kdengine.store.runstore import PREDICTIONS, read_predictions

    store = RunStore(runs_dir())
    for rid in store.list_ids():
        preds, metrics = read_predictions(store.run_dir(rid) / PREDICTIONS), store.read_metrics(rid)
        assert set(preds) == {"val", "test"} and preds["test"]["probs"].dtype.name == "float32"
        for split, p in preds.items():
            assert p["index"].tolist() == list(range(metrics[split]["n"]))
            assert float((p["pred"] == p["label"]).mean()) == pytest.approx(metrics[split]["accuracy"], abs=1e-9)


def test_study_table_reads_only_the_studys_runs(capsys, tmp_path):
    """A study's table pairs each student with its own baseline even when the store holds other settings."""
    from kdengine.study.expand import expand
    from kdengine.reports.study import study_tables
    from kdengine.study.registry import save_study
    from kdengine.study.schema import load_study

    root = tmp_path / "runs"
    store, student, baseline = fake_finished_store(root, epochs=2, accuracies=(0.8, 0.74, 0.70))
    fake_finished_store(root, epochs=1, accuracies=(0.6, 0.50, 0.60))
    toml = tmp_path / "mini.toml"
    toml.write_text('seeds = [0]\n[data]\nimage_size = 32\n[train]\nepochs = 2\n'
                    '[[experiments]]\nstrategy = "normal"\nteachers = ["resnet18"]\nstudents = ["test_resnet"]\n')
    study = load_study(str(toml))
    plan = expand(study)
    assert student.run_id in {p.run_id for p in plan}
    save_study(store, study, plan)
    tables = study_tables(store, "mini")
    normal = tables.get("students_normal")
    assert "settings" not in normal.columns
    (row,) = _cells(normal)
    assert row["gain resnet18"].mean == pytest.approx(-0.04)
    assert tables.finished == 3 and tables.planned == 3
