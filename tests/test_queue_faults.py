"""The queue never livelocks, never overwrites finished work, never lets one bad run stop the rest; a damaged
store hides nothing healthy; a full disk stops a worker cleanly."""
from __future__ import annotations

import errno
import json
import os
import time

import pytest

from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store.records import collect
from kdengine.store import RunStore
from kdengine.execution.worker import Worker
from tests.conftest import SMALL_SYNTH
from tests.engine_helpers import FAST, train
from tests.tui_helpers import fake_finished_store, wait_for


def corrupt_folder(tmp_path):
    """A folder dataset of valid PNGs (queueing decodes it: a bad image would be refused there)."""
    from tests.conftest import make_png_folder

    return make_png_folder(tmp_path / "imgs", per_class=12)


def corrupt(root):
    """One image truncated after the runs were queued (a disk, a copy gone wrong): found only when decoding."""
    (root / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def test_a_failed_teacher_does_not_livelock_the_worker(capsys, tmp_path):
    """The issue's reproduction: normal KD on data with a truncated PNG, then a worker with a short idle exit.
    The teacher fails once, the student waits (saying why), the worker exits idle, the log stays small."""
    data = corrupt_folder(tmp_path)
    assert main(["train", *FAST, "--data", f"folder:{data}", "--strategy", "normal", "--teacher", "test_efficientnet",
                 "--student", "test_resnet", "--queue"]) == 0
    corrupt(data)
    capsys.readouterr()
    store = RunStore(runs_dir())
    t0 = time.time()
    assert Worker(store, "cpu", idle_exit=3.0).run() == 0
    assert time.time() - t0 < 60
    records = {r.run_id: r for r in collect(store)}
    teacher = next(r for r in records.values() if r.model == "test_efficientnet")
    student = next(r for r in records.values() if r.kind == "kd")
    assert teacher.state == "failed" and "corrupt or unreadable image" in teacher.status.reason
    assert "--skip-bad" in teacher.status.reason  # the reason says what to fix
    assert student.state == "queued" and student.status.reason.startswith(f"waiting: teacher {teacher.run_id}")
    events = store.read_events(teacher.run_id)[0]
    assert sum(e.get("state") == "running" for e in events) == 1  # claimed once, not 70 times a second
    assert (store.run_dir(teacher.run_id) / "events.jsonl").stat().st_size < 5000
    # a person retries the teacher: it is queued again (and fails again, for the same reason, once)
    assert main(["runs", "retry", teacher.run_id]) == 0
    assert store.read_status(teacher.run_id).state == "queued"


def test_a_finished_run_with_a_damaged_status_is_never_retrained(capsys):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1")
    store = RunStore(runs_dir())
    rid = m["run_id"]
    best = store.checkpoint_dir(rid) / "best.safetensors"
    before = (best.read_bytes(), (store.run_dir(rid) / "metrics.json").read_text())
    for garbage in (b"{not json", b"", b'{"state": "queued"}', b"[1, 2]"):
        (store.run_dir(rid) / "status.json").write_bytes(garbage)
        assert store.read_status(rid).state == "finished"
        assert Worker(store, "cpu", once=True).run() == 0
        assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert (best.read_bytes(), (store.run_dir(rid) / "metrics.json").read_text()) == before
    assert sum(e["type"] == "start" for e in store.read_events(rid)[0]) == 1


def test_one_bad_spec_does_not_stop_the_worker(capsys):
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1",
                 "--queue"]) == 0
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_efficientnet", "--epochs", "1",
                 "--queue"]) == 0
    capsys.readouterr()
    store = RunStore(runs_dir())
    bad, good = store.list_ids()
    path = store.run_dir(bad) / "spec.json"
    header = json.loads(path.read_text())
    header["spec"]["colour"] = "red"
    path.write_text(json.dumps(header))
    assert Worker(store, "cpu", once=True).run() == 0
    assert store.read_status(good).state == "finished"
    status = store.read_status(bad)
    assert status.state == "failed" and "damaged" in status.reason and "colour" in status.reason


def test_a_damaged_store_hides_no_healthy_run(capsys, tmp_path):
    store, student, baseline = fake_finished_store(tmp_path / "runs")
    fake_finished_store(tmp_path / "runs", seed=1)
    ids = store.list_ids()
    victims = ids[3:]  # the seed-1 runs get damaged, the seed-0 ones stay healthy
    # spec.json with a missing key, a wrong type, garbage; a finished run without metrics; a torn event log
    h = json.loads((store.run_dir(victims[0]) / "spec.json").read_text())
    del h["spec"]["model"]
    (store.run_dir(victims[0]) / "spec.json").write_text(json.dumps(h))
    h = json.loads((store.run_dir(victims[1]) / "spec.json").read_text())
    h["spec"]["train"]["epochs"] = "many"
    (store.run_dir(victims[1]) / "spec.json").write_text(json.dumps(h))
    (store.run_dir(victims[2]) / "metrics.json").unlink()
    with open(store.run_dir(ids[0]) / "events.jsonl", "ab") as fh:
        fh.write(b'{"type": "epo')
    (store.run_dir(ids[1]) / "status.json").write_text("garbage")
    (store.root / "junk-dir").mkdir()
    (store.root / "junk-file.txt").write_text("x")
    (store.root / "orphan").mkdir()
    (store.root / "orphan" / "checkpoints").mkdir()
    (store.run_dir(ids[2]) / ".metrics.json.abc123.tmp").write_text("half")

    records = {r.run_id: r for r in collect(store)}
    assert len(records) == 6
    healthy = [r for r in records.values() if not r.damaged]
    assert {r.run_id for r in healthy} == set(ids[:3])
    assert all(r.finished for r in healthy)
    assert "spec.json" in records[victims[0]].damage and "model" in records[victims[0]].damage
    assert "epochs" in records[victims[1]].damage
    assert "metrics.json is missing" in records[victims[2]].damage

    assert main(["runs", "list", "--runs-dir", str(store.root), "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(listed) == 6 and sum(r["damaged"] for r in listed.values()) == 3
    assert main(["table", "--runs-dir", str(store.root), "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    rows = (tmp_path / "t" / "runs.csv").read_text()
    assert all(rid in rows for rid in ids[:3]) and not any(rid in rows for rid in victims)

    assert main(["runs", "doctor", "--runs-dir", str(store.root)]) == 0
    report = capsys.readouterr().out
    for fragment in ("damaged spec.json", "metrics.json is missing", "status.json unreadable", "junk-file.txt",
                     "junk-dir", "checkpoints of a run that no longer exists", ".metrics.json.abc123.tmp"):
        assert fragment in report, fragment
    assert main(["runs", "doctor", "--fix", "--runs-dir", str(store.root)]) == 0
    capsys.readouterr()
    assert not list(store.root.rglob("*.tmp"))
    assert json.loads((store.run_dir(ids[1]) / "status.json").read_text())["state"] == "finished"
    assert (store.root / "junk-file.txt").exists()  # nobody's data is deleted by --fix


async def test_kdtui_shows_healthy_and_damaged_runs(tmp_path):
    from kdtui.app import KDStudyApp

    store, _, _ = fake_finished_store(tmp_path / "runs")
    fake_finished_store(tmp_path / "runs", seed=1)
    victim = store.list_ids()[-1]
    (store.run_dir(victim) / "spec.json").write_text("[]")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one("#runs-table")
        for _ in range(40):
            if table.row_count == 6:
                break
            await pilot.pause(0.25)
        assert table.row_count == 6
        assert app.screen.rows[victim].damaged and "spec.json" in app.screen.rows[victim].reason
        await pilot.press("3")
        for _ in range(40):
            if app.screen.tables is not None:
                break
            await pilot.pause(0.25)
        normal = app.screen.tables.get("students_normal")
        assert normal is not None and normal.rows  # the healthy runs are all in the tables


async def test_kdtui_worker_key_on_an_unwritable_store_says_so(tmp_path):
    from kdtui.app import KDStudyApp

    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = KDStudyApp(blocker / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("w")  # the worker dialog: device auto, one run per GPU
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "WorkerScreen", timeout=10)
        await pilot.press("enter")

        def errors():
            return [n.message for n in app._notifications if n.severity == "error"]
        await wait_for(pilot, lambda: errors(), timeout=10)
        assert app.is_running and "could not start a worker" in errors()[0]


def test_best_checkpoint_is_as_readable_as_every_other_file(capsys):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1")
    d = RunStore(runs_dir()).run_dir(m["run_id"])
    mode = (d / "metrics.json").stat().st_mode & 0o777
    assert (d / "checkpoints" / "best.safetensors").stat().st_mode & 0o777 == mode
    assert mode & 0o044  # group and others may read results (as the umask allows)


def test_thread_count_is_recorded_and_a_resume_under_another_says_so(capsys, monkeypatch):
    import torch

    from kdengine.training import trainer

    threads = torch.get_num_threads()
    real = trainer.save_last

    def crash_after_first(path_dir, state):
        real(path_dir, state)
        raise RuntimeError("power cut")

    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(trainer, "save_last", crash_after_first)
        with pytest.raises(RuntimeError):
            main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet"])
        monkeypatch.setattr(trainer, "save_last", real)
        torch.set_num_threads(2)
        m, err = train(capsys, "--strategy", "baseline", "--student", "test_resnet")
    finally:
        torch.set_num_threads(threads)
    events = RunStore(runs_dir()).read_events(m["run_id"])[0]
    assert [e["threads"] for e in events if e["type"] == "start"] == [1, 2]
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("started with 1 CPU threads and resumes with 2" in w for w in warnings)
    assert m["runtime"]["threads"] == 2 and m["runtime"]["device"] == "cpu"


# -- a full disk ---------------------------------------------------------------------------------------------------
def enospc_on(monkeypatch, name_part: str, after: int = 0):
    """Make the atomic write of files whose name holds ``name_part`` fail with ENOSPC (after ``after`` successes)."""
    from kdengine import atomic

    real = atomic.os.replace
    seen = {"n": 0}

    def replace(src, dst, *a, **kw):
        if name_part in str(dst):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_full_disk_fails_the_run_cleanly_and_stops_the_worker(capsys, monkeypatch):
    for student in ("test_resnet", "test_efficientnet"):
        assert main(["train", *FAST, "--strategy", "baseline", "--student", student, "--epochs", "3",
                     "--queue"]) == 0
    capsys.readouterr()
    store = RunStore(runs_dir())
    first, second = store.list_ids()
    with pytest.MonkeyPatch.context() as mp:
        enospc_on(mp, "last.pt", after=1)  # epoch 1's checkpoint is written, epoch 2's meets a full disk
        assert Worker(store, "cpu", once=True).run() == 2
    out = capsys.readouterr().out
    status = store.read_status(first)
    assert status.state == "failed" and status.reason.startswith("disk full writing ")
    assert "last.pt" in status.reason
    assert "stops claiming runs" in out
    assert store.read_status(second).state == "queued"  # not failed one by one
    events = store.read_events(first)[0]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]  # the log is intact
    ckpt = store.checkpoint_dir(first)
    assert (ckpt / "last.pt").is_file() and not list(store.root.rglob("*.tmp"))
    import torch

    assert torch.load(ckpt / "last.pt", weights_only=True)["state"]["epoch"] == 1  # the last good checkpoint
    # space again: retry resumes after epoch 1
    assert main(["runs", "retry", first]) == 0
    assert Worker(store, "cpu", once=True).run() == 0
    assert all(store.read_status(r).state == "finished" for r in (first, second))
    assert [e["epoch"] for e in store.read_events(first)[0] if e["type"] == "resume"] == [1]


def test_a_full_data_disk_is_one_line(capsys, monkeypatch, tmp_path):
    from kdengine.data import cache

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", full)
    monkeypatch.setenv("KDSTUDY_CACHE", str(tmp_path / "cache"))
    assert main(["data", "check", SMALL_SYNTH, "--image-size", "40"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: disk full writing ") and err.count("\n") == 1
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written


def test_kdstudy_debug_keeps_the_traceback_for_environment_errors(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KDSTUDY_DEBUG", "1")
    from kdengine import cli

    def boom(args):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    parser = cli.build_parser()
    args = parser.parse_args(["models"])
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, a: args})())
    args.handler = boom
    with pytest.raises(OSError):
        cli.main([])
    monkeypatch.delenv("KDSTUDY_DEBUG")
    assert cli.main([]) == 2
    assert "input/output error: /dev/sdz" in capsys.readouterr().err
    os.environ.pop("KDSTUDY_DEBUG", None)


def test_a_writer_that_hides_enospc_in_its_own_error_is_still_a_full_disk(monkeypatch, tmp_path):
    """safetensors reports a full disk as SafetensorError("... No space left on device (os error 28)")."""
    import shutil

    from kdengine import atomic

    class SafetensorError(Exception):
        pass

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(atomic.DiskFull, match="disk full writing .*best.safetensors"):
        with atomic.atomic_path(tmp_path / "best.safetensors") as tmp:
            tmp.write_bytes(b"x" * 5000)
            raise SafetensorError("Error while serializing: I/O error")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage)  # plenty of space: the writer's own error stands
    with pytest.raises(SafetensorError):
        with atomic.atomic_path(tmp_path / "best.safetensors"):
            raise SafetensorError("a bug")
