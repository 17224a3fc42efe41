"""Acquisition shifts: exact at severity 0, deterministic for their seed, each severity further from clean than
the one before, batching-invariant; evaluation stored once; robustness tables with paired gains."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kdengine.cli import main
from kdengine.data.config import DataConfig, open_source
from kdengine.paths import runs_dir
from kdengine.data.corruptions import SHIFTS, apply_shift, parse_severities, parse_shifts, render_site
from kdengine.store import RunStore
from tests.conftest import SMALL_SYNTH
from tests.engine_helpers import train


@pytest.fixture(scope="module")
def images():
    from kdengine.data.cache import letterbox

    src = open_source(DataConfig(source=SMALL_SYNTH))
    return np.stack([letterbox(src.images[i], 48) for i in range(24)])


@pytest.mark.parametrize("name", list(SHIFTS))
def test_each_shift_is_exact_at_zero_deterministic_and_monotonic(images, name):
    rows = np.arange(100, 100 + len(images))
    assert np.array_equal(apply_shift(images, name, 0, seed=0, rows=rows), images)
    distances = []
    for severity in (1, 2, 3, 4, 5):
        a = apply_shift(images, name, severity, seed=3, rows=rows)
        b = apply_shift(images, name, severity, seed=3, rows=rows)
        assert a.dtype == np.uint8 and a.shape == images.shape and np.array_equal(a, b)  # same seed, same images
        halves = np.concatenate([apply_shift(images[:10], name, severity, 3, rows[:10]),
                                 apply_shift(images[10:], name, severity, 3, rows[10:])])
        assert np.array_equal(halves, a)  # each image draws from its own seed: batching does not matter
        distances.append(float(np.abs(a.astype(float) - images).mean()))
    assert all(later > earlier for earlier, later in zip(distances, distances[1:])), distances
    assert distances[0] > 0.5  # even severity 1 changes the images measurably


def test_random_shifts_follow_their_seed(images):
    for name in ("gaussian_noise", "poisson_noise", "collimation"):
        assert not np.array_equal(apply_shift(images, name, 3, seed=1), apply_shift(images, name, 3, seed=2))


def test_parsing():
    assert parse_shifts("all") == list(SHIFTS) and parse_shifts("blur,jpeg") == ["blur", "jpeg"]
    assert parse_severities("1..5") == [1, 2, 3, 4, 5] and parse_severities("5,1,3") == [1, 3, 5]
    from kdengine.errors import UsageError

    for bad in ("0..5", "x", "6", ""):
        if bad:
            with pytest.raises(UsageError):
                parse_severities(bad)
    with pytest.raises(UsageError, match="unknown shift 'fog'"):
        parse_shifts("blur,fog")


def test_a_synthetic_site_is_another_machine(images):
    other = render_site(images, 1)
    assert other.shape == images.shape and np.abs(other.astype(float) - images).mean() > 5
    assert np.array_equal(render_site(images, 0), images)


def test_shift_evaluation_end_to_end(capsys, tmp_path):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1")
    rid = m["run_id"]
    out = tmp_path / "robust"
    assert main(["shift", rid, "--shifts", "blur,gamma,inversion", "--severities", "1,3,5", "--out", str(out),
                 "--external", "synthetic:images=280,seed=9,site=1"]) == 0
    capsys.readouterr()
    store = RunStore(runs_dir())
    (result,) = json.loads((store.run_dir(rid) / "shift.json").read_text())["entries"].values()  # one request
    # severity 0 is the clean test split: the run's own test accuracy, exactly
    assert result["clean"]["accuracy"] == m["test"]["accuracy"] and result["clean"]["n"] == m["test"]["n"]
    assert set(result["cells"]) == {"blur", "gamma", "inversion"} and set(result["cells"]["blur"]) == {"1", "3", "5"}
    accs = [c["accuracy"] for levels in result["cells"].values() for c in levels.values()]
    assert result["mean_accuracy"] == pytest.approx(np.mean(accs))
    assert result["relative_drop"] == pytest.approx((result["clean"]["accuracy"] - result["mean_accuracy"])
                                                    / result["clean"]["accuracy"])
    assert result["external"]["n"] == 280 and 0 <= result["external"]["accuracy"] <= 1
    # the per-image predictions are kept beside it, and every accuracy is their mean
    from kdengine.store.records import read_shift_arrays

    arrays = read_shift_arrays(store.run_dir(rid) / result["per_image"])
    assert float((arrays["clean"] == arrays["label"]).mean()) == pytest.approx(result["clean"]["accuracy"])
    for name, levels in result["cells"].items():
        for severity, cell in levels.items():
            assert float((arrays["cells"][name][severity] == arrays["label"]).mean()) == pytest.approx(cell["accuracy"])
    assert float((arrays["external"]["pred"] == arrays["external"]["label"]).mean()) == \
        pytest.approx(result["external"]["accuracy"])
    names = {p.name for p in out.iterdir()}
    assert {"robustness.csv", "robustness.md", "robustness_cells.csv", "models.csv"} <= names
    long = (out / "robustness_cells.csv").read_text().splitlines()
    assert len(long) == 1 + 1 + 9 + 1  # header, clean, 3 shifts x 3 severities, external
    # computed once: asking again reads it back
    before = (store.run_dir(rid) / "shift.json").stat().st_mtime_ns
    assert main(["shift", rid, "--shifts", "inversion,gamma,blur", "--severities", "5,3,1", "--out", str(out),
                 "--external", "synthetic:images=280,seed=9,site=1"]) == 0  # the same request, in another order
    capsys.readouterr()
    assert (store.run_dir(rid) / "shift.json").stat().st_mtime_ns == before
    assert main(["shift", rid, "--external", "npz:/nope.npz"]) == 2
    assert main(["shift", "nope"]) == 2


def test_a_study_evaluates_under_shift_and_tables_pair_the_gains(capsys, tmp_path):
    """Two seeds of normal KD with [shift]: the robustness gain of each student over its own baseline, paired."""
    study = tmp_path / "s.toml"
    study.write_text(f'seeds = [0, 1]\n[data]\nsource = "{SMALL_SYNTH}"\nimage_size = 32\n[train]\nepochs = 1\n'
                     '[shift]\nshifts = "blur,jpeg"\nseverities = "2,4"\n'
                     '[[experiments]]\nstrategy = "normal"\nteachers = ["test_efficientnet"]\nstudents = ["test_resnet"]\n')
    assert main(["study", "run", str(study), "--quiet", "--device", "cpu"]) == 0
    assert main(["study", "table", "s", "--out", str(tmp_path / "t"), "--format", "both"]) == 0
    capsys.readouterr()
    import csv

    rows = [r for r in csv.DictReader(open(tmp_path / "t" / "robustness_normal.csv"))
            if r["column"] == "gain test_efficientnet"]
    assert [r["split"] for r in rows] == ["test"]
    store = RunStore(runs_dir())
    shift = {r: next(iter(json.loads((store.run_dir(r) / "shift.json").read_text())["entries"].values()))
             for r in store.list_ids()}
    student = [r for r in shift if r.startswith("normal-")]
    diffs = []
    for rid in student:
        base = next(b for b in shift if b.startswith("ce-test_resnet-") and f"-s{rid.split('-s')[1][0]}-" in b)
        diffs.append(shift[rid]["mean_accuracy"] - shift[base]["mean_accuracy"])
    assert float(rows[0]["mean"]) == pytest.approx(np.mean(diffs), abs=1e-4)
    # over seeds and test images: the per-image predictions under shift are kept (issue 35)
    assert rows[0]["n_seeds"] == "2" and rows[0]["interval"] == "seeds+images" and rows[0]["n_images"] != "0"
    # issue 38: another request never replaces the study's own results, and the study's tables read its own
    assert main(["shift", "s", "--shifts", "gamma", "--severities", "5", "--out", str(tmp_path / "other")]) == 0
    assert main(["study", "table", "s", "--out", str(tmp_path / "t2"), "--format", "csv"]) == 0
    capsys.readouterr()
    again = [r for r in csv.DictReader(open(tmp_path / "t2" / "robustness_normal.csv"))
             if r["column"] == "gain test_efficientnet"]
    assert again[0]["mean"] == rows[0]["mean"] and again[0]["ci_lo"] == rows[0]["ci_lo"]
    for rid in store.list_ids():
        entries = json.loads((store.run_dir(rid) / "shift.json").read_text())["entries"]
        assert sorted(tuple(e["key"]["shifts"]) for e in entries.values()) == [("blur", "jpeg"), ("gamma",)]
    other = [r for r in csv.DictReader(open(tmp_path / "other" / "robustness.csv")) if r["column"] == "gamma"]
    assert other and "blur" not in {r["column"] for r in csv.DictReader(open(tmp_path / "other" / "robustness.csv"))}
    # a plain `kdengine shift STUDY` asks for the study's own [shift]: read back, nothing computed, nothing added
    kept = {rid: (store.run_dir(rid) / "shift.json").stat().st_mtime_ns for rid in store.list_ids()}
    assert main(["shift", "s", "--out", str(tmp_path / "own")]) == 0
    _, err = capsys.readouterr()
    assert "its own [shift] request (2 shift(s) at severities 2, 4, seed 0)" in err
    assert {rid: (store.run_dir(rid) / "shift.json").stat().st_mtime_ns for rid in store.list_ids()} == kept
    assert main(["study", "run", str(study), "--quiet", "--device", "cpu"]) == 0  # again: finds its own results
    assert {rid: (store.run_dir(rid) / "shift.json").stat().st_mtime_ns for rid in store.list_ids()} == kept
    own = list(csv.DictReader(open(tmp_path / "own" / "robustness.csv")))
    assert {"blur", "jpeg"} <= {r["column"] for r in own} and "gamma" not in {r["column"] for r in own}
    robust = list(csv.DictReader(open(tmp_path / "t" / "robustness_cells.csv")))
    assert {r["shift"] for r in robust} == {"clean", "blur", "jpeg"}
    md = (tmp_path / "t" / "tables.md").read_text()
    assert "Robustness under acquisition shift" in md
