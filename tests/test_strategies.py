"""Every strategy trains end to end on a tiny model and the synthetic data, on the CPU."""
from __future__ import annotations

import json

import pytest

from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.engine_helpers import train

CLASSES = ["elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"]


def _check_metrics(m):
    """The metrics agree with their own confusion matrix: accuracy, per-class recall/precision, macro-F1 and
    Cohen's kappa recomputed from it by hand."""
    import numpy as np

    assert m["class_names"] == CLASSES
    for split in ("train", "val", "test"):
        s = m[split]
        cm = np.asarray(s["confusion"], float)
        n = cm.sum()
        assert cm.shape == (7, 7) and n == s["n"] > 0
        assert s["accuracy"] == pytest.approx(np.trace(cm) / n)
        rows, cols = cm.sum(1), cm.sum(0)
        for i, name in enumerate(CLASSES):
            r = s["report"][name]
            assert r["support"] == rows[i]
            assert r["recall"] == pytest.approx(cm[i, i] / rows[i] if rows[i] else 0.0)
            assert r["precision"] == pytest.approx(cm[i, i] / cols[i] if cols[i] else 0.0)
        assert s["macro_f1"] == pytest.approx(np.mean([r["f1"] for r in s["report"].values()]))
        p_o, p_e = np.trace(cm) / n, (rows * cols).sum() / n**2
        assert s["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e) if p_e < 1 else 0.0, abs=1e-9)
        assert 0.0 <= s["ece"] <= 1.0
    assert m["synthetic"] is True


def _store_files(run_id):
    d = RunStore(runs_dir()).run_dir(run_id)
    for name in ("spec.json", "status.json", "events.jsonl", "metrics.json", "checkpoints/best.safetensors"):
        assert (d / name).is_file(), name
    assert not (d / "checkpoints" / "last.pt").exists()  # resume state is dropped once finished
    assert json.loads((d / "status.json").read_text())["state"] == "finished"
    return d


def test_baseline(capsys):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet")
    _check_metrics(m)
    assert m["kind"] == "ce" and m["teachers"] == []
    d = _store_files(m["run_id"])
    events = [json.loads(l) for l in (d / "events.jsonl").read_text().splitlines()]
    types = [e["type"] for e in events]
    assert types.count("epoch") == 2 and "step" in types and types[-1] == "lifecycle"
    epoch = next(e for e in events if e["type"] == "epoch")
    assert set(epoch["val"]) >= {"loss", "accuracy", "macro_f1", "kappa", "ece"} and len(epoch["val_confusion"]) == 7


@pytest.mark.parametrize("strategy, teacher, student", [
    ("normal", "resnet10t", "test_resnet"),
    ("reverse", "test_resnet", "resnet10t"),
])
def test_teacher_strategies(capsys, strategy, teacher, student):
    m, _ = train(capsys, "--strategy", strategy, "--teacher", teacher, "--student", student)
    _check_metrics(m)
    assert m["teachers"][0]["model"] == teacher
    assert 0 <= m["test"]["agreement"] <= 1 and 0 <= m["val"]["agreement"] <= 1
    _store_files(m["run_id"])
    _store_files(m["teachers"][0]["run_id"])
    # the student's baseline (trained alone, same settings and seed) is trained too
    assert any(r.startswith(f"ce-{student}-s0-") for r in RunStore(runs_dir()).list_ids())


def test_summary_shows_baseline_and_gain(capsys):
    from kdengine.cli import main
    from tests.engine_helpers import FAST

    assert main(["train", *FAST, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet"]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "gain over the baseline" in out and "no interval" in out
    assert main(["train", *FAST, "--strategy", "normal", "--teacher", "test_efficientnet", "--student",
                 "test_convnext", "--no-baseline"]) == 0
    capsys.readouterr()
    assert not any(r.startswith("ce-test_convnext") for r in RunStore(runs_dir()).list_ids())


def test_reverse_warns_when_teacher_is_larger(capsys):
    from kdengine.cli import main
    from tests.engine_helpers import FAST

    code = main(["train", *[a for a in FAST if a != "--quiet"], "--strategy", "reverse", "--teacher", "resnet10t",
                 "--student", "test_resnet", "--epochs", "1"])
    _, err = capsys.readouterr()
    assert code == 0 and "reverse KD expects a smaller teacher" in err


def test_defective_stops_at_threshold_and_records_accuracy(capsys):
    m, _ = train(capsys, "--strategy", "defective", "--teacher", "test_resnet", "--student", "test_resnet",
                 "--defect-acc", "0.2", "--defect-check-every", "2", "--epochs", "4")
    _check_metrics(m)
    t = m["teachers"][0]
    d = t["defect"]
    assert d["threshold"] == 0.2 and d["reached"] and d["val_accuracy"] >= 0.2
    teacher_metrics = RunStore(runs_dir()).read_metrics(t["run_id"])
    # the teacher's recorded accuracy is the accuracy of the weights it teaches with
    assert teacher_metrics["val"]["accuracy"] == pytest.approx(d["val_accuracy"])
    assert teacher_metrics["epochs_run"] <= 4
    assert t["run_id"].startswith("defective-")


def test_defective_check_catches_it_within_one_epoch(capsys, monkeypatch):
    """A threshold passed early must stop training mid-epoch (checked every N steps), and its progress bar ends
    there saying why (it froze at "46/184 ep 1/4 ETA 0:05:13": issue 26)."""
    from kdengine.training.progress import Progress

    ends = []
    monkeypatch.setattr(Progress, "finish", lambda self, done, info: ends.append((self.title, done, info)))
    m, _ = train(capsys, "--strategy", "defective", "--teacher", "test_resnet", "--student", "test_resnet",
                 "--defect-acc", "0.01", "--defect-check-every", "1", "--epochs", "3")
    d = m["teachers"][0]["defect"]
    assert d["epoch"] == 1 and d["global_step"] == 1
    assert ends == [("defective test_resnet (stop at val acc 0.01)", 1, "ep 1/3 stopped at the defect threshold")]


def test_tf_self_uses_the_students_own_baseline(capsys):
    base, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet")
    m, err = train(capsys, "--strategy", "tf-self", "--student", "test_resnet")
    _check_metrics(m)
    assert m["teachers"][0]["run_id"] == base["run_id"]
    assert m["teachers"][0]["model"] == "test_resnet"


def test_tf_reg_has_no_teacher_network(capsys):
    m, _ = train(capsys, "--strategy", "tf-reg", "--student", "test_resnet", "--tf-a", "0.8", "--tf-temperature", "2")
    _check_metrics(m)
    assert m["teachers"] == [] and "agreement" not in m["test"]


def test_ensemble_of_two_teachers(capsys):
    m, _ = train(capsys, "--strategy", "ensemble", "--teacher", "test_resnet", "--teacher", "test_efficientnet",
                 "--student", "test_resnet")
    _check_metrics(m)
    assert [t["model"] for t in m["teachers"]] == ["test_resnet", "test_efficientnet"]


def test_teacher_is_reused_not_retrained(capsys):
    first, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet")
    second, err = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_convnext")
    tid = first["teachers"][0]["run_id"]
    assert second["teachers"][0]["run_id"] == tid
    events = RunStore(runs_dir()).read_events(tid)[0]
    assert sum(e["type"] == "start" for e in events) == 1
    # the baseline of the teacher architecture is the same run
    base, _ = train(capsys, "--strategy", "baseline", "--student", "test_efficientnet")
    assert base["run_id"] == tid
    # a different seed is a different teacher
    third, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet",
                     "--seed", "1", "--epochs", "1")
    assert third["teachers"][0]["run_id"] != tid


def test_mura_abnormality_reports_study_level_kappa(capsys, clean_mura_tree):
    from kdengine.cli import main
    from tests.engine_helpers import FAST

    args = [a for a in FAST]
    args[args.index("--data") + 1] = f"mura:{clean_mura_tree}"
    assert main(["train", *args, "--task", "abnormality", "--strategy", "baseline", "--student", "test_resnet",
                 "--epochs", "1", "--json"]) == 0
    import json

    m = json.loads(capsys.readouterr().out)
    assert m["class_names"] == ["normal", "abnormal"]
    study = m["test"]["study"]
    assert study["n"] == 7 * 2 * 2  # 7 parts x 2 test patients x 2 studies
    assert sum(map(sum, study["confusion"])) == study["n"] and -1 <= study["kappa"] <= 1


def test_defective_threshold_checked_at_epoch_end_too(capsys):
    """With checks rarer than an epoch, the end-of-epoch validation still stops the teacher."""
    m, _ = train(capsys, "--strategy", "defective", "--teacher", "test_resnet", "--student", "test_resnet",
                 "--defect-acc", "0.05", "--defect-check-every", "1000", "--epochs", "3", "--no-baseline")
    d = m["teachers"][0]["defect"]
    assert d["reached"] and d["epoch"] == 1
    teacher = RunStore(runs_dir()).read_metrics(m["teachers"][0]["run_id"])
    assert teacher["epochs_run"] == 1 and teacher["val"]["accuracy"] == pytest.approx(d["val_accuracy"])
