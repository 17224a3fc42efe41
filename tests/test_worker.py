"""The queue and the worker: queued runs are claimed and trained; stopping; one worker per GPU."""
from __future__ import annotations


from kdengine.execution import spawn
from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.engine_helpers import FAST


def test_queue_then_worker_trains_teacher_first(capsys):
    assert main(["train", *FAST, "--strategy", "normal", "--teacher", "test_efficientnet", "--student",
                 "test_resnet", "--queue"]) == 0
    store = RunStore(runs_dir())
    ids = store.list_ids()
    assert len(ids) == 3 and all(store.read_status(r).state == "queued" for r in ids)
    assert main(["worker", "--once", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert all(store.read_status(r).state == "finished" for r in ids)
    order = [line for line in out.splitlines() if "training " in line]
    assert "test_efficientnet" in order[0]  # the teacher before its student


def test_stop_request_stops_then_the_run_resumes(capsys, monkeypatch):
    """The heartbeat thread notices the stop request (the training loop never stats the file itself)."""
    from kdengine.store import runstore

    calls = {"n": 0}
    real = RunStore.stop_requested

    def stop_on_fifth_check(self, run_id):
        calls["n"] += 1
        return calls["n"] == 5 or real(self, run_id)

    monkeypatch.setattr(runstore, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(RunStore, "stop_requested", stop_on_fifth_check)
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet"]) == 1
    assert "was stopped" in capsys.readouterr().err
    store = RunStore(runs_dir())
    (rid,) = store.list_ids()
    status = store.read_status(rid)
    assert status.state == "stopped" and status.reason == "stopped by the user"
    monkeypatch.setattr(RunStore, "stop_requested", real)
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet"]) == 0
    capsys.readouterr()
    assert store.read_status(rid).state == "finished"


def test_runs_stop_command_on_a_queued_run(capsys):
    main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--queue"])
    (rid,) = RunStore(runs_dir()).list_ids()
    assert main(["runs", "stop", rid[:12]]) == 0
    assert "stopped" in capsys.readouterr().out
    assert RunStore(runs_dir()).read_status(rid).state == "stopped"
    assert main(["runs", "show", "nope"]) == 2


def fake_spawn(spawned):
    def spawn(root, device, gpu=None, idle_exit=30.0, **_):
        spawned.append((device, gpu))
        return len(spawned)

    return spawn


def test_one_worker_per_gpu_each_pinned(monkeypatch, tmp_path):
    spawned = []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.setattr(spawn, "spawn_worker", fake_spawn(spawned))
    assert spawn.ensure_workers(tmp_path, "auto") == [1, 2, 3]
    assert spawned == [("cuda", 0), ("cuda", 1), ("cuda", 2)]
    spawned.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert spawn.ensure_workers(tmp_path, "auto") == [1]
    assert spawned == [("auto", None)]
    spawned.clear()
    assert spawn.ensure_workers(tmp_path, "cpu", runs_per_gpu=4) == [1]  # no GPU: one CPU worker
    assert spawned == [("cpu", None)]


def test_packing_several_runs_per_gpu(monkeypatch, tmp_path):
    spawned = []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(spawn, "spawn_worker", fake_spawn(spawned))
    assert len(spawn.ensure_workers(tmp_path, "auto", runs_per_gpu=4)) == 8
    assert spawned == [("cuda", 0)] * 4 + [("cuda", 1)] * 4


def test_detached_worker_has_its_own_session(tmp_path):
    import os
    import time

    pid = spawn.spawn_worker(tmp_path, "cpu", idle_exit=1.0)
    try:
        assert os.getsid(pid) != os.getsid(0)
        deadline = time.time() + 60
        while time.time() < deadline and not list((tmp_path / ".workers").glob("*.log")):
            time.sleep(0.2)
        assert list((tmp_path / ".workers").glob("worker-*.log"))
    finally:
        try:
            os.killpg(pid, 15)
        except OSError:
            pass
