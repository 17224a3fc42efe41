"""Shared teacher outputs: exact (bitwise-equal best weights on CPU), keyed so that nothing else is ever read,
write-once, and off with KDSTUDY_NO_LOGIT_SHARING=1."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file

from kdengine.store import RunStore
from kdengine.training.teacher_outputs import TeacherOutputs
from tests.engine_helpers import train

KD = ("--strategy", "normal", "--teacher", "test_efficientnet", "--no-baseline", "--epochs", "2")


def outputs_used(store, rid):
    return [e.get("teacher_outputs") for e in store.read_events(rid)[0] if e["type"] == "epoch"]


def test_a_student_reading_shared_logits_equals_one_computing_them(capsys, tmp_path, monkeypatch):
    shared_dir, own_dir = str(tmp_path / "shared"), str(tmp_path / "own")
    first, _ = train(capsys, *KD, "--student", "test_convnext", "--runs-dir", shared_dir)
    second, _ = train(capsys, *KD, "--student", "test_resnet", "--runs-dir", shared_dir)
    store = RunStore(shared_dir)
    assert outputs_used(store, first["run_id"]) == ["computed", "computed"]
    assert outputs_used(store, second["run_id"]) == ["shared", "shared"]
    teacher_dir = store.run_dir(first["teachers"][0]["run_id"]) / "teacher_outputs"
    files = sorted(p.name for p in teacher_dir.rglob("*.npy"))
    assert files == ["eval-test.npy", "eval-train.npy", "eval-val.npy", "train-e0001.npy", "train-e0002.npy"]

    monkeypatch.setenv("KDSTUDY_NO_LOGIT_SHARING", "1")
    alone, _ = train(capsys, *KD, "--student", "test_resnet", "--runs-dir", own_dir)
    assert alone["run_id"] == second["run_id"]
    assert outputs_used(RunStore(own_dir), alone["run_id"]) == [None, None]
    assert not (RunStore(own_dir).run_dir(first["teachers"][0]["run_id"]) / "teacher_outputs").exists()
    a = load_file(store.checkpoint_dir(second["run_id"]) / "best.safetensors")
    b = load_file(RunStore(own_dir).checkpoint_dir(alone["run_id"]) / "best.safetensors")
    assert a.keys() == b.keys() and all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
    assert second["test"]["loss"] == alone["test"]["loss"] and second["test"]["agreement"] == alone["test"]["agreement"]


def test_other_seed_or_batch_size_gets_its_own_outputs(capsys, tmp_path):
    store_dir = str(tmp_path / "s")
    a, _ = train(capsys, *KD, "--student", "test_convnext", "--runs-dir", store_dir)
    b, _ = train(capsys, *KD, "--student", "test_resnet", "--runs-dir", store_dir, "--batch-size", "16",
                 "--teacher-set", "batch_size=32")  # the same teacher run, another batching
    assert b["teachers"][0]["run_id"] == a["teachers"][0]["run_id"]
    store = RunStore(store_dir)
    assert outputs_used(store, b["run_id"]) == ["computed", "computed"]  # another batching: not the same numbers
    keys = list((store.run_dir(a["teachers"][0]["run_id"]) / "teacher_outputs").glob("*/key.json"))
    assert len(keys) == 4  # train and eval, for each batch size


def test_write_once_and_partial_files_are_never_read(tmp_path):
    outputs = TeacherOutputs(tmp_path, {"k": 1})
    first = np.ones((5, 3), np.float32)
    outputs.save("train-e0001", first)
    outputs.save("train-e0001", np.zeros((5, 3), np.float32))  # the first write wins
    assert np.array_equal(outputs.load("train-e0001", 5), first)
    assert outputs.load("train-e0001", 6) is None  # another split size: not these outputs
    (outputs.dir / "train-e0002.npy").write_bytes(b"\x93NUMPY half")
    assert outputs.load("train-e0002", 5) is None
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("env", ["1"])
def test_sharing_can_be_turned_off(env, monkeypatch):
    from kdengine.training.teacher_outputs import sharing_enabled

    assert sharing_enabled()
    monkeypatch.setenv("KDSTUDY_NO_LOGIT_SHARING", env)
    assert not sharing_enabled()


def test_the_device_input_path_trains_shares_and_never_reads_the_loaders_outputs(capsys, tmp_path):
    """--device-input on the CPU: the decoded cache as a tensor, views drawn by batched tensor ops. Its
    students share teacher outputs among themselves, under a key of their own (their views differ)."""
    store_dir = str(tmp_path / "s")
    one = ("--epochs", "1", "--runs-dir", store_dir)
    first, _ = train(capsys, *KD, *one, "--student", "test_convnext", "--device-input")
    second, _ = train(capsys, *KD, *one, "--student", "test_resnet", "--device-input")
    loader, _ = train(capsys, *KD, *one, "--student", "test_resnet", "--seed", "0", "--kl-reduction", "mean")
    store = RunStore(store_dir)
    start = next(e for e in store.read_events(first["run_id"])[0] if e["type"] == "start")
    assert start["augment"] == "tensor" and start["trained_on"]["input"] == "device"
    assert first["runtime"]["input"] == "device" and np.isfinite(first["test"]["loss"])
    assert outputs_used(store, first["run_id"]) == ["computed"]
    assert outputs_used(store, second["run_id"]) == ["shared"]
    assert outputs_used(store, loader["run_id"]) == ["computed"]  # albumentations' views: not the tensor path's
    epoch = next(e for e in store.read_events(second["run_id"])[0] if e["type"] == "epoch")
    assert epoch["epoch_s"] > 0 and epoch["timing"]["train_s"] > 0 and epoch["seconds"] >= epoch["epoch_s"]
