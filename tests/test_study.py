"""Studies: preset expansion, validation, statistics, resume, the reduced demo end to end, and tables."""
from __future__ import annotations

import csv
import math
import shlex
from collections import Counter

import pytest

from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.reports.stats import paired_gain, summarize
from kdengine.store import RunStore
from kdengine.study.expand import expand
from kdengine.study.schema import load_study
from tests.conftest import SMALL_SYNTH

THESIS = ["vgg11", "resnet18", "resnet34", "resnet50", "seresnet50", "seresnet101"]
SMALL = ["vgg11", "resnet18", "resnet34", "resnet50"]
SE = ["seresnet50", "seresnet101"]


def test_thesis_preset_expands_to_exactly_the_grid(clean_mura_tree):
    study = load_study("thesis-mura", sets=["seeds=[0,1]"], data=f"mura:{clean_mura_tree}")
    plan = expand(study)
    ids = [p.run_id for p in plan]
    assert len(ids) == len(set(ids)) == 2 * 32
    for seed in (0, 1):
        mine = [p for p in plan if p.spec.seed == seed]
        students = {(p.spec.strategy, p.spec.teacher.model, p.spec.model) for p in mine if p.spec.kind == "kd"}
        expected = ({("normal", t, s) for t in SE for s in SMALL} | {("reverse", t, s) for t in SMALL for s in SE}
                    | {("defective", t, s) for t in SE for s in SMALL})
        assert students == expected and len(students) == 24
        ce = [p for p in mine if p.spec.kind == "ce" and p.spec.regime == "normal"]
        # each architecture trained once: it serves as a teacher and as the baselines of that architecture
        assert sorted(p.spec.model for p in ce) == sorted(THESIS)
        assert all(p.roles == {"teacher", "baseline"} for p in ce)
        defective = [p for p in mine if p.spec.regime == "defective"]
        assert sorted(p.spec.model for p in defective) == sorted(SE) and all(p.spec.defect_acc == 0.5 for p in defective)
        # every student's teacher is a run of the plan (trained once, shared)
        planned = set(ids)
        assert all(p.spec.teacher.run_id in planned for p in mine if p.spec.kind == "kd")
    # teachers run before their students
    order = {p.run_id: i for i, p in enumerate(plan)}
    assert all(order[p.spec.teacher.run_id] < order[p.run_id] for p in plan if p.spec.kind == "kd")
    s = plan[0].spec
    assert (s.train.optimizer, s.train.lr, s.train.batch_size, s.train.epochs, s.data.image_size, s.train.pretrained) == \
        ("adam", 1e-4, 16, 20, 224, True)
    assert (s.data.cap_train, s.data.cap_test, s.data.task) == (2201, 250, "body_part")


def test_abnormality_preset(clean_mura_tree):
    plan = expand(load_study("thesis-mura-abnormality", data=str(clean_mura_tree), sets=["seeds=[0]"]))
    assert len(plan) == 32 and plan[0].spec.data.task == "abnormality"


def test_thesis_preset_needs_data(capsys):
    assert main(["study", "run", "thesis-mura", "--dry-run"]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ('[train]\nepoch = 3\n[[experiments]]\nstrategy="baseline"\nstudents=["test_resnet"]', "unknown key 'train.epoch'"),
    ('seeds = "x"\n[[experiments]]\nstrategy="baseline"\nstudents=["test_resnet"]', "'seeds' must be"),
    ('[[experiments]]\nstrategy="bogus"\nstudents=["test_resnet"]', "'experiments[1].strategy' must be one of"),
    ('[train]\nlr = "fast"\n[[experiments]]\nstrategy="baseline"\nstudents=["test_resnet"]', "train.lr must be number"),
    ('[[experiments]]\nstrategy="normal"\nstudents=["test_resnet"]', "needs teachers"),
    ('colour = 1\n[[experiments]]\nstrategy="baseline"\nstudents=["a"]', "unknown key 'colour'"),
    ('[[experiments]]\nstrategy="baseline"\nstudents=["nosuchnet"]', "unknown model 'nosuchnet'"),
    ("this is = not toml [", "not valid TOML"),
])
def test_validation_one_line(capsys, tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    assert main(["study", "run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_set_overrides_are_data(capsys):
    study = load_study("demo", sets=["train.epochs=7", "seeds=[3,4,5]", "data.source=synthetic:images=280,seed=3"])
    assert study.train.epochs == 7 and study.seeds == [3, 4, 5] and study.data.source.endswith("seed=3")
    # a --set value is parsed as TOML data, never evaluated as code
    study = load_study("demo", sets=["description=__import__('os').system('false')"])
    assert study.description == "__import__('os').system('false')"


def test_statistics_on_constructed_numbers():
    s = summarize([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.std == 1.0 and s.n == 3
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert s.lo == pytest.approx(2.0 - half) and s.hi == pytest.approx(2.0 + half)
    one = summarize([0.7])
    assert one.std is None and not one.has_interval and one.fmt() == "0.7000"
    gain = paired_gain({0: 0.80, 1: 0.82, 2: 0.84, 9: 0.99}, {0: 0.70, 1: 0.74, 2: 0.76})
    assert gain.n == 3 and gain.mean == pytest.approx(0.08666667)
    assert gain.std == pytest.approx(0.01154701)
    assert gain.lo == pytest.approx(0.08666667 - 4.302652729911275 * 0.01154701 / math.sqrt(3))
    assert gain.excludes_zero
    noisy = paired_gain({0: 0.80, 1: 0.70}, {0: 0.75, 1: 0.74})
    assert not noisy.excludes_zero


def test_ensemble_block_expands_to_one_student_with_all_teachers(tmp_path):
    path = tmp_path / "ens.toml"
    path.write_text('seeds=[0]\n[[experiments]]\nstrategy="ensemble"\nteachers=["test_resnet","test_efficientnet"]\n'
                    'students=["test_convnext"]\n')
    plan = expand(load_study(str(path)))
    (student,) = [p for p in plan if p.spec.kind == "kd"]
    assert [t.model for t in student.spec.teachers] == ["test_resnet", "test_efficientnet"]
    assert {p.spec.model for p in plan if p.spec.kind == "ce"} == {"test_resnet", "test_efficientnet", "test_convnext"}


# the demo's [shift] cut to one cell and no external set: test_shift.py covers shifts themselves
# the demo's schedule at batch 32 and lr 1e-3: one epoch of 190 images at the demo's batch of 64 is 3 steps
REDUCED = ["--set", f"data.source={SMALL_SYNTH}", "--set", "data.image_size=32", "--set", "train.epochs=1",
           "--set", "train.batch_size=32", "--set", "train.lr=0.001",
           "--set", "shift.shifts=blur", "--set", "shift.severities=\"1\"", "--set", "shift.external=none",
           "--quiet", "--device", "cpu"]


def test_reduced_demo_end_to_end_and_tables(capsys, tmp_path):
    assert main(["study", "run", "demo", *REDUCED]) == 0
    out = capsys.readouterr().out
    assert "study demo: 14/14 runs finished" in out  # 7 runs per seed (normal KD with two methods), 2 seeds
    store = RunStore(runs_dir())
    assert main(["study", "status", "demo"]) == 0
    assert "14 finished" in capsys.readouterr().out
    assert main(["study", "table", "demo", "--out", str(tmp_path / "t"), "--format", "both"]) == 0
    capsys.readouterr()
    names = {p.name for p in (tmp_path / "t").iterdir()}
    assert {"models.csv", "models.md", "students_normal.csv", "students_reverse.csv", "students_defective.csv",
            "students_normal.md", "runs.csv", "tables.md"} <= names
    rows = list(csv.DictReader(open(tmp_path / "t" / "students_normal.csv")))  # long: one row per cell and split
    # the method axis: one group of rows per method, named by its point
    assert list(dict.fromkeys((r["settings"], r["student"], r["split"]) for r in rows)) == \
        [(f"method={m}", "test_resnet", s) for m in ("dist", "hinton") for s in ("train", "val", "test")]
    test = {r["column"]: r for r in rows if r["split"] == "test" and r["settings"] == "method=hinton"}
    assert test["resnet10t"]["n_seeds"] == "2" and test["baseline"]["n_seeds"] == "2"
    gain = test["gain resnet10t"]
    lo, hi, mean = float(gain["ci_lo"]), float(gain["ci_hi"]), float(gain["mean"])
    assert lo <= mean <= hi and gain["significant"] in ("True", "False") and gain["interval"] == "seeds+images"
    # the gain is paired: the mean of per-seed differences between each student and its own baseline run
    tidy = list(csv.DictReader(open(tmp_path / "t" / "runs.csv")))
    acc = {r["run_id"]: float(r["accuracy"]) for r in tidy if r["split"] == "test"}
    students = [r for r in tidy if r["split"] == "test" and r["strategy"] == "normal" and r["method"] == "hinton"]
    assert len(students) == 2 and all(r["baseline_run_id"].startswith("ce-test_resnet-") for r in students)
    diffs = [acc[r["run_id"]] - acc[r["baseline_run_id"]] for r in students]
    assert mean == pytest.approx(sum(diffs) / 2, abs=1e-4)
    assert all(float(r["gain"]) == pytest.approx(d, abs=1e-5) for r, d in zip(students, diffs))
    models = list(csv.DictReader(open(tmp_path / "t" / "models.csv")))
    regimes = {(r["model"], r["regime"]) for r in models}
    assert ("resnet10t", "normal") in regimes and ("resnet10t", "defective (stop at 0.50)") in regimes
    md = (tmp_path / "t" / "students_normal.md").read_text()
    assert "±" in md and "SYNTHETIC" in md
    assert all(r["synthetic"] == "True" for r in tidy)
    # running it again trains nothing
    assert main(["study", "run", "demo", *REDUCED]) == 0
    capsys.readouterr()
    for rid in store.list_ids():
        assert sum(e["type"] == "start" for e in store.read_events(rid)[0]) == 1


def test_resume_after_an_interrupted_study(capsys, monkeypatch):
    from kdengine.training import trainer

    real_run = trainer.Trainer.run
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed ctrl-c in the third run
        return real_run(self)

    monkeypatch.setattr(trainer.Trainer, "run", interrupted)
    assert main(["study", "run", "demo", *REDUCED, "--set", "seeds=[0]"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ") and f"{shlex.join(['kdengine', 'study', 'run', 'demo', *REDUCED, '--set', 'seeds=[0]'])} again" in err  # as typed
    assert "RUN_ID" not in err  # the ids to retry, not a placeholder (issue 26)
    store = RunStore(runs_dir())
    statuses = {r: store.read_status(r) for r in store.list_ids()}
    states = Counter(s.state for s in statuses.values())
    assert states["finished"] == 2 and "failed" not in states  # ctrl-c is no failure
    stopped = {r: s for r, s in statuses.items() if s.state == "stopped"}
    assert sum("interrupted (ctrl-c)" in (s.reason or "") for s in stopped.values()) == 1  # the one it trained
    assert all(rid in err for rid in stopped)  # each run to retry is named in the message
    # what it queued: stopped before it started, or (a student of an unfinished teacher) waiting for it
    for rid, s in statuses.items():
        if s.state == "queued":
            assert s.reason.startswith("waiting: teacher"), s
    assert states["stopped"] + states["queued"] == 5
    finished_before = {r for r in store.list_ids() if store.read_status(r).state == "finished"}
    monkeypatch.setattr(trainer.Trainer, "run", real_run)
    assert main(["study", "run", "demo", *REDUCED, "--set", "seeds=[0]"]) == 0
    assert "7/7 runs finished" in capsys.readouterr().out
    for rid in finished_before:  # not trained again
        assert sum(e["type"] == "start" for e in store.read_events(rid)[0]) == 1


def test_thesis_preset_runs_on_a_mura_shaped_tree(capsys, clean_mura_tree):
    """The thesis preset (its data, task, caps and real thesis architectures) on a MURA-shaped tree, with the
    grid cut to one normal-KD pair and 1 epoch at 32 px: the full 32-run grid is too heavy for CI (VGG11 alone
    writes 0.5 GB per checkpoint); the other strategies' code paths are the same and run on tiny models elsewhere."""
    sub_grid = 'experiments=[{strategy="normal",teachers=["seresnet50"],students=["resnet18"]}]'
    code = main(["study", "run", "thesis-mura", "--data", f"mura:{clean_mura_tree}", "--set", "seeds=[0]",
                 "--set", "teachers=[]", "--set", sub_grid, "--set", "train.pretrained=false",
                 "--set", "train.epochs=1", "--set", "data.image_size=32", "--quiet", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3/3 runs finished" in out
    store = RunStore(runs_dir())
    metrics = [store.read_metrics(r) for r in store.list_ids()]
    assert all(m["class_names"][0] == "elbow" and not m["synthetic"] for m in metrics)


def test_intervals_are_clipped_to_the_range():
    s = summarize([0.2, 0.9], bounds=(0.0, 1.0))
    assert s.lo == 0.0 and s.hi == 1.0 and s.mean == pytest.approx(0.55)
    g = paired_gain({0: 0.9, 1: 0.1}, {0: 0.1, 1: 0.1})
    assert g.lo >= -1.0 and g.hi <= 1.0
