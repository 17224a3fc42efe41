"""Determinism, resume after a crash, NaN handling, tables and trackers."""
from __future__ import annotations

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
    assert status.state == "failed" and "simulated power cut" in status.reason
    monkeypatch.setattr(trainer, "save_last", real)
    resumed, _ = train(capsys, *args, "--runs-dir", str(tmp_path / "crash"))
    events = store.read_events(rid)[0]
    assert any(e["type"] == "resume" and e["epoch"] == 2 for e in events)
    assert sum(e["type"] == "epoch" and e["epoch"] == 1 for e in events) == 1  # epoch 1 was not redone
    assert resumed["test"]["loss"] == pytest.approx(ref["test"]["loss"], rel=1e-6)
    assert resumed["test"]["confusion"] == ref["test"]["confusion"]


def test_nan_loss_fails_the_run_with_reason(capsys, monkeypatch):
    import torch

    from kdengine.training import losses

    def nan_terms(self, student, teachers, targets, index):
        return {"ce": student.logits.float().sum() * torch.tensor(float("nan"))}

    monkeypatch.setattr(losses.Distiller, "terms", nan_terms)
    code = main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet"])
    _, err = capsys.readouterr()
    assert code == 1 and "nan" in err.lower()
    store = RunStore(runs_dir())
    (rid,) = store.list_ids()
    status = store.read_status(rid)
    assert status.state == "failed" and "nan" in status.reason.lower()


def test_tensorboard_tracker_writes_event_files(capsys):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1",
                 "--tracker", "tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = RunStore(runs_dir()).run_dir(m["run_id"]) / "tensorboard"
    events = EventAccumulator(str(tb))
    events.Reload()
    # the scalars read back are the run's own numbers: one point per epoch, and the final test accuracy
    val_acc = events.Scalars("val/accuracy")
    assert [e.step for e in val_acc] == [1]
    store_epochs = [e for e in RunStore(runs_dir()).read_events(m["run_id"])[0] if e["type"] == "epoch"]
    assert val_acc[0].value == pytest.approx(store_epochs[0]["val"]["accuracy"], abs=1e-6)
    assert events.Scalars("final/test/accuracy")[0].value == pytest.approx(m["test"]["accuracy"], abs=1e-6)


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
    # Neptune's offline queue: one JSON operation per line; read back the paths that were written
    paths = set()
    for p in nep.rglob("data-*.log"):
        for line in p.read_text().splitlines():
            if line.strip():
                op = json.loads(line)["obj"]
                if "path" in op:
                    paths.add("/".join(op["path"]))
    assert {"final/test/confusion_matrix", "final/test/classification_report", "final/test/accuracy",
            "val/accuracy", "parameters/train/epochs"} <= paths


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
    sd, ref = model.state_dict(), src.state_dict()
    loaded = [k for k in ref if k in sd and not k.startswith(("fc.", "head"))]
    assert loaded and all(torch.equal(sd[k], ref[k]) for k in loaded)  # every backbone tensor came from the file
    assert model.get_classifier().out_features == 7
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1",
                 "--pretrained-from", str(path))
    assert m["test"]["n"] > 0
    spec = RunStore(runs_dir()).load_spec(m["run_id"])
    assert spec.train.pretrained is True and spec.train.pretrained_from == str(path)


def test_models_lists_param_counts(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert by["seresnet101"]["pretrained_as"] == "legacy_seresnet101"
    assert by["resnet18"]["params"] > by["test_resnet"]["params"] > 0
