"""The run store: atomic writes, torn lines, liveness, claiming, and no torch on the read side."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from kdengine import atomic
from kdengine.store import RunStore
from kdengine.data.config import DataConfig
from kdengine.runspec import RunSpec
from kdengine.store.runstore import read_jsonl

SPEC = RunSpec(model="test_resnet", data=DataConfig(), regime="normal")
OTHER = RunSpec(model="test_resnet", data=DataConfig(), seed=1, regime="normal")


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    atomic.write_json(path, {"state": "running"})

    def broken(obj, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(atomic.json, "dumps", broken)
    with pytest.raises(RuntimeError):
        atomic.write_json(path, {"state": "finished"})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left behind


def test_torn_last_line_is_tolerated_and_mended(tmp_path):
    store = RunStore(tmp_path)
    store.create(SPEC)
    r1 = SPEC.run_id
    store.append_event(r1, {"type": "step", "loss": 1.0})
    path = store.run_dir(r1) / "events.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"type": "step", "lo')  # a writer died mid-line
    events, offset = read_jsonl(path)
    assert [e["type"] for e in events] == ["lifecycle", "step"]
    assert read_jsonl(path, offset) == ([], offset)  # the torn tail is not consumed
    store.append_event(r1, {"type": "epoch", "epoch": 1})
    more, _ = read_jsonl(path, offset)
    assert [e["type"] for e in more] == ["epoch"]  # the torn line is skipped, the new one read


def test_dead_worker_shows_as_failed_with_reason(tmp_path):
    store = RunStore(tmp_path)
    store.create(SPEC)
    r1 = SPEC.run_id
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.write_status(r1, "running", pid=proc.pid)
    status = store.read_status(r1)
    assert status.state == "failed" and status.stale and "is gone" in status.reason
    store.write_status(r1, "running", pid=os.getpid(), heartbeat=time.time() - 3600, host="elsewhere")
    status = store.read_status(r1)
    assert status.state == "failed" and "no heartbeat for" in status.reason
    # on this host: a live process with a fresh heartbeat is running
    store.write_status(r1, "running")
    assert store.read_status(r1).state == "running"
    # ... but not when its heartbeat stopped (hung), however alive the pid
    store.write_status(r1, "running", heartbeat=time.time() - 3600)
    assert "no heartbeat for 3600s" in store.read_status(r1).reason


def test_a_recycled_pid_is_not_the_worker(tmp_path):
    """The pid now belongs to another Python process (this test's): its start time tells them apart."""
    from kdengine.store.liveness import process_start

    store = RunStore(tmp_path)
    store.create(SPEC)
    store.write_status(SPEC.run_id, "running", pid=os.getpid(), pid_start=process_start(os.getpid()) - 1)
    status = store.read_status(SPEC.run_id)
    assert status.state == "failed" and "is gone" in status.reason
    store.write_status(SPEC.run_id, "running", pid=os.getpid(), pid_start=process_start(os.getpid()))
    assert store.read_status(SPEC.run_id).state == "running"


def test_claim_is_exclusive_and_stop_requests(tmp_path):
    store = RunStore(tmp_path)
    r1, r2 = SPEC.run_id, OTHER.run_id
    store.create(SPEC)
    assert not store.create(SPEC)  # idempotent
    assert store.claim(r1, "w1")
    assert not store.claim(r1, "w2")
    assert store.request_stop(r1) == "stopping" and store.stop_requested(r1)
    store.finish(r1, "stopped", "stopped by the user")
    assert not store.claim(r1, "w2")  # a stopped run resumes only when someone asks
    assert store.requeue(r1) and store.claim(r1, "w2")
    assert not store.stop_requested(r1)
    running = [e for e in store.read_events(r1)[0] if e.get("state") == "running"]
    assert [e["resumed_from"] for e in running] == [None, "stopped"]
    store.create(OTHER)
    assert store.request_stop(r2) == "stopped"


def test_reading_the_store_does_not_import_torch(tmp_path):
    store = RunStore(tmp_path)
    store.create(SPEC)
    code = (
        "import sys; from kdengine.store import RunStore; from kdengine.store.records import collect;"
        "from kdengine.reports.tables import build; from kdengine.execution.spawn import ensure_workers;"
        "from kdengine.runspec import build_specs; from kdengine.data.config import open_source;"
        "from kdengine.reports.study import study_tables; from kdengine.options import form_fields;"
        f"s = RunStore({str(tmp_path)!r}); s.read_status({SPEC.run_id!r}); s.read_events({SPEC.run_id!r});"
        "build(collect(s));"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_rule_decides_what_may_be_done_to_a_run():
    """store.actions: the CLI, kdtui and scripts ask the same question and get the same answer."""
    from kdengine.store.actions import plan, why_not

    assert why_not("stop", "running") is None and why_not("stop", "queued") is None
    assert why_not("stop", "finished") == "finished: nothing to stop"
    assert why_not("retry", "failed") is None and why_not("retry", "stopped") is None
    assert why_not("retry", "running") == "already running"
    assert why_not("retry", "finished") == "finished: its results stay"
    assert why_not("retry", "finished", damage="metrics.json is damaged") .startswith("finished but")
    assert why_not("retry", "finished", damage="metrics.json is damaged", force=True) is None
    assert why_not("retry", "failed", damage="spec.json is missing", readable=False).startswith("cannot be retried")
    assert why_not("delete", "running") == "running: stop it first" and why_not("archive", "finished") is None

    class R:
        def __init__(self, rid, state):
            self.run_id, self.state, self.damage, self.spec = rid, state, None, object()

    batch = plan([R("a", "failed"), R("b", "finished"), R("c", "stopped")], "retry")
    assert batch.apply == ["a", "c"] and batch.skipped == {"b": "finished: its results stay"}
