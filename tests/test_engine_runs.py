"""Determinism, resume after a crash, NaN handling, tables and trackers."""
from __future__ import annotations

import csv
import json

import pytest

from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.engine_helpers import FAST, train


def test_cpu_run_repeats_exactly(capsys, tmp_path):
    a, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--runs-dir", str(tmp_path / "a"))
    b, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--runs-dir", str(tmp_path / "b"))
    for split in ("train", "val", "test"):
        assert a[split]["loss"] == b[split]["loss"]
        assert a[split]["confusion"] == b[split]["confusion"]


def test_crash_then_resume_gives_the_same_result(capsys, tmp_path, monkeypatch):
    from kdengine.training import trainer

    args = ("--strategy", "baseline", "--student", "test_resnet", "--epochs", "3")
    ref, _ = train(capsys, *args, "--runs-dir", str(tmp_path / "ref"))

    real = trainer.save_last
    calls = {"n": 0}

    def crash_after_second_epoch(path_dir, state):
        real(path_dir, state)
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated power cut")

    monkeypatch.setattr(trainer, "save_last", crash_after_second_epoch)
    with pytest.raises(RuntimeError):
        main(["train", *FAST, *args, "--runs-dir", str(tmp_path / "crash")])
    capsys.readouterr()
    store = RunStore(tmp_path / "crash")
    rid = ref["run_id"]
    status = store.read_status(rid)
    assert status["state"] == "failed" and "simulated power cut" in status["reason"]
    monkeypatch.setattr(trainer, "save_last", real)
    resumed, _ = train(capsys, *args, "--runs-dir", str(tmp_path / "crash"))
    events = store.read_events(rid)[0]
    assert any(e["type"] == "resume" and e["epoch"] == 2 for e in events)
    assert sum(e["type"] == "epoch" and e["epoch"] == 1 for e in events) == 1  # epoch 1 was not redone
    assert resumed["test"]["loss"] == pytest.approx(ref["test"]["loss"], rel=1e-6)
    assert resumed["test"]["confusion"] == ref["test"]["confusion"]


def test_nan_loss_fails_the_run_with_reason(capsys, monkeypatch):
    import torch

    from kdengine.training import strategies

    def nan_terms(self, logits, targets, teacher_logits):
        return {"ce": logits.float().sum() * torch.tensor(float("nan"))}

    monkeypatch.setattr(strategies.CrossEntropy, "terms", nan_terms)
    code = main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet"])
    _, err = capsys.readouterr()
    assert code == 1 and "nan" in err.lower()
    store = RunStore(runs_dir())
    (rid,) = store.list_ids()
    status = store.read_status(rid)
    assert status["state"] == "failed" and "nan" in status["reason"].lower()


def test_tables(capsys, tmp_path):
    n, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet")
    r, _ = train(capsys, "--strategy", "reverse", "--teacher", "test_resnet", "--student", "test_efficientnet")
    base, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet")
    out = tmp_path / "tables"
    assert main(["table", "--out", str(out)]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(out / "results.csv")))
    need = {"run_id", "strategy", "role", "teacher", "student", "seed", "split", "accuracy", "macro_f1", "kappa", "ece"}
    assert need <= set(rows[0])
    # 2 CE runs (each a teacher and a baseline) + 2 students, 3 splits each
    assert len(rows) == 4 * 3
    student = [x for x in rows if x["run_id"] == n["run_id"] and x["split"] == "test"][0]
    assert student["role"] == "student" and student["teacher"] == "test_efficientnet"
    assert float(student["accuracy"]) == pytest.approx(n["test"]["accuracy"], abs=1e-4)
    assert float(student["baseline_accuracy"]) == pytest.approx(base["test"]["accuracy"], abs=1e-4)
    wide = list(csv.DictReader(open(out / "table_normal.csv")))
    assert [(w["student"], w["split"]) for w in wide] == [("test_resnet", s) for s in ("train", "val", "test")]
    test_row = wide[2]
    assert float(test_row["test_efficientnet"]) == pytest.approx(n["test"]["accuracy"], abs=1e-4)
    assert float(test_row["baseline"]) == pytest.approx(base["test"]["accuracy"], abs=1e-4)
    assert float(test_row["gain test_efficientnet"]) == pytest.approx(n["test"]["accuracy"] - base["test"]["accuracy"], abs=1e-3)
    assert (out / "table_reverse.csv").is_file() and (out / "table_baseline.csv").is_file()


def test_tensorboard_tracker_writes_event_files(capsys):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1",
                 "--tracker", "tensorboard")
    tb = RunStore(runs_dir()).run_dir(m["run_id"]) / "tensorboard"
    files = list(tb.glob("events.out.tfevents.*"))
    assert files and files[0].stat().st_size > 0


def test_neptune_tracker_runs_offline_under_the_run(capsys):
    from kdengine.cli import main as cli

    code = cli(["train", *[a for a in FAST if a != "--quiet"], "--strategy", "baseline", "--student", "test_resnet",
                "--epochs", "1", "--tracker", "neptune"])
    _, err = capsys.readouterr()
    assert code == 0
    assert err.count("logging offline") == 1
    (rid,) = RunStore(runs_dir()).list_ids()
    nep = RunStore(runs_dir()).run_dir(rid) / "neptune"
    files = [p for p in nep.rglob("*") if p.is_file()]
    assert files, "no offline neptune data"
    blob = b"".join(p.read_bytes() for p in files)
    assert b"final/test/confusion_matrix" in blob or b"confusion_matrix" in blob


@pytest.mark.parametrize("args, message", [
    (["--strategy", "baseline", "--student", "resnet181"], "did you mean resnet18"),
    (["--strategy", "reverse", "--student", "test_resnet"], "needs --teacher"),
    (["--strategy", "tf-reg", "--student", "test_resnet", "--teacher", "test_resnet"], "takes no --teacher"),
    (["--strategy", "normal", "--student", "test_resnet", "--teacher", "test_resnet", "--alpha", "1.5"], "alpha"),
    (["--strategy", "normal", "--student", "test_resnet", "--teacher", "test_resnet", "--temperature", "0"], "temperature"),
    (["--strategy", "baseline", "--student", "test_resnet", "--epochs", "0"], "epochs"),
    (["--strategy", "baseline", "--student", "resnet18", "--image-size", "16"], "too small"),
    (["--strategy", "baseline", "--student", "test_resnet", "--data", "/nope"], "no such file"),
    (["--strategy", "baseline", "--student", "test_resnet", "--pretrained-from", "/nope.safetensors"], "no such file"),
])
def test_bad_input_one_line_exit_2(capsys, args, message):
    code = main(["train", *FAST, *args])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert message in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_pretrained_from_local_file(capsys, tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    src = timm.create_model("test_resnet", num_classes=1000, in_chans=3)
    path = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    from kdengine.models.factory import create_model

    model = create_model("test_resnet", 7, pretrained=True, pretrained_from=str(tmp_path))
    sd = model.state_dict()
    assert torch.equal(sd["conv1.0.weight"] if "conv1.0.weight" in sd else next(iter(sd.values())),
                       src.state_dict()["conv1.0.weight"] if "conv1.0.weight" in sd else next(iter(src.state_dict().values())))
    assert model.get_classifier().out_features == 7
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1",
                 "--pretrained-from", str(path))
    assert m["test"]["n"] > 0
    spec = RunStore(runs_dir()).read_spec(m["run_id"])["spec"]
    assert spec["pretrained"] is True


def test_models_lists_param_counts(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert by["seresnet101"]["pretrained_as"] == "legacy_seresnet101"
    assert by["resnet18"]["params"] > by["test_resnet"]["params"] > 0
