"""One directory per run: spec.json, status.json, events.jsonl, metrics.json, checkpoints/.

See docs/run-store.md. Every file but the event log is replaced atomically; the
event log is append-only, and readers tolerate a torn last line. Nothing here
imports torch, so the TUI and the table exports stay light.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from ..atomic import write_json

STATES = ("queued", "running", "finished", "failed", "stopped")
HEARTBEAT_S = 5.0  # how often a running worker refreshes the heartbeat
STALE_S = 120.0  # a heartbeat older than this means the worker is gone
SPEC, STATUS, EVENTS, METRICS, STOP = "spec.json", "status.json", "events.jsonl", "metrics.json", "stop.request"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is a Python process (a recycled pid of another program is not our worker)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:  # a zombie (exited child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
        return b"python" in cmd or b"kdengine" in cmd
    except OSError:
        return True


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete lines from ``offset``; returns the events and the offset to resume from.

    A last line without its newline (a writer mid-append, or one that died) is
    left for the next read; a damaged line in the middle is skipped.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            blob = fh.read()
    except OSError:
        return [], offset
    end = blob.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in blob[: end + 1].splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events, offset + end + 1


class RunStore:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # -- layout ---------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def checkpoint_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoints"

    def workers_dir(self) -> Path:
        return self.root / ".workers"

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            try:  # spec.json is written once, when the run is created: its mtime orders the runs
                found.append((os.stat(p / SPEC).st_mtime_ns, p.name))
            except OSError:
                continue
        return [name for _, name in sorted(found)]

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / SPEC).is_file()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """A store-wide lock (flock) for claiming runs; held for milliseconds."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- creation ---------------------------------------------------------------
    def create(self, spec) -> bool:
        """Write a queued run for a RunSpec; returns False (and changes nothing) when it already exists."""
        from ..runspec import STORE_VERSION

        run_id = spec.run_id
        with self.lock():
            if self.exists(run_id):
                return False
            d = self.run_dir(run_id)
            d.mkdir(parents=True, exist_ok=True)
            now = time.time()
            write_json(d / STATUS, {"state": "queued", "updated": now, "reason": None})
            self.append_event(run_id, {"type": "lifecycle", "state": "queued"})
            write_json(d / SPEC, {"run_id": run_id, "spec_hash": spec.spec_hash(), "store_version": STORE_VERSION,
                                  "created": now, "describe": spec.describe(), "spec": spec.to_dict()})
            return True

    # -- reading -------------------------------------------------------------------
    def read_spec_file(self, run_id: str) -> dict | None:
        """spec.json as written: run_id, spec_hash, created, describe and the spec itself."""
        return read_json(self.run_dir(run_id) / SPEC)

    def load_spec(self, run_id: str):
        """The run's RunSpec; UsageError naming the fault when spec.json is missing or damaged."""
        from ..errors import UsageError
        from ..runspec import RunSpec

        header = self.read_spec_file(run_id)
        if not isinstance(header, dict) or "spec" not in header:
            raise UsageError(f"run {run_id}: spec.json is missing or not valid JSON")
        try:
            return RunSpec.from_dict(header["spec"])
        except UsageError as exc:
            raise UsageError(f"run {run_id}: {exc}") from None

    def read_metrics(self, run_id: str) -> dict | None:
        return read_json(self.run_dir(run_id) / METRICS)

    def read_events(self, run_id: str, offset: int = 0) -> tuple[list[dict], int]:
        return read_jsonl(self.run_dir(run_id) / EVENTS, offset)

    def read_status(self, run_id: str) -> dict:
        """The status as written, with a dead worker's run shown as failed (not running forever)."""
        status = read_json(self.run_dir(run_id) / STATUS) or {"state": "queued", "reason": None}
        if status.get("state") == "running":
            dead = self._dead_reason(status)
            if dead:
                status = {**status, "state": "failed", "reason": dead, "stale": True}
        return status

    def _dead_reason(self, status: dict) -> str | None:
        """On this host the pid decides; for a worker on another host, the heartbeat's age."""
        beat = float(status.get("heartbeat") or status.get("updated") or 0)
        age = time.time() - beat
        if status.get("host") == socket.gethostname() and status.get("pid"):
            if pid_alive(int(status["pid"])):
                return None
            return f"worker (pid {status['pid']}) died; last heartbeat {age:.0f}s ago"
        if age > STALE_S:
            return f"no heartbeat for {age:.0f}s: the worker is gone"
        return None

    # -- writing ---------------------------------------------------------------------
    def write_status(self, run_id: str, state: str, reason: str | None = None, **extra: Any) -> None:
        assert state in STATES, state
        now = time.time()
        status = {"state": state, "reason": reason, "updated": now, **extra}
        if state == "running":
            status.setdefault("pid", os.getpid())
            status.setdefault("host", socket.gethostname())
            status.setdefault("heartbeat", now)
        write_json(self.run_dir(run_id) / STATUS, status)

    def heartbeat(self, run_id: str, **extra: Any) -> None:
        current = read_json(self.run_dir(run_id) / STATUS) or {}
        current.update(extra)
        current["heartbeat"] = current["updated"] = time.time()
        write_json(self.run_dir(run_id) / STATUS, current)

    def append_event(self, run_id: str, event: dict[str, Any]) -> None:
        """Append one JSON line; first mends a torn last line left by a crashed writer."""
        path = self.run_dir(run_id) / EVENTS
        line = json.dumps({"t": round(time.time(), 3), **event}, default=_plain, separators=(",", ":"))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                with open(path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        prefix = b"\n"
            os.write(fd, prefix + line.encode() + b"\n")
        finally:
            os.close(fd)

    def write_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        write_json(self.run_dir(run_id) / METRICS, metrics)

    # -- lifecycle -----------------------------------------------------------------
    def claim(self, run_id: str, worker: str, force: bool = False) -> bool:
        """Move a run to running for this process; False if someone else has it or it is done.

        Queued, failed and stopped runs can be claimed (failed/stopped ones resume);
        ``force`` is not needed for a run whose worker died: it reads as failed.
        """
        with self.lock():
            state = self.read_status(run_id)["state"]
            if state == "running" or (state == "finished" and not force):
                return False
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir(run_id) / STOP).unlink()
            self.write_status(run_id, "running", worker=worker)
            self.append_event(run_id, {"type": "lifecycle", "state": "running", "worker": worker,
                                       "pid": os.getpid(), "resumed_from": state if state != "queued" else None})
            return True

    def finish(self, run_id: str, state: str, reason: str | None = None) -> None:
        self.write_status(run_id, state, reason)
        self.append_event(run_id, {"type": "lifecycle", "state": state, "reason": reason})

    def requeue(self, run_id: str) -> None:
        with self.lock():
            if self.read_status(run_id)["state"] in ("failed", "stopped"):
                self.write_status(run_id, "queued")
                self.append_event(run_id, {"type": "lifecycle", "state": "queued", "requeued": True})

    def request_stop(self, run_id: str) -> str:
        """Ask a run to stop: a running run stops at its next step; a queued one stops now."""
        with self.lock():
            state = self.read_status(run_id)["state"]
            if state == "queued":
                self.finish(run_id, "stopped", "stopped before it started")
                return "stopped"
            if state == "running":
                (self.run_dir(run_id) / STOP).write_text(str(time.time()))
                return "stopping"
            return state

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / STOP).exists()

    # -- workers ---------------------------------------------------------------------
    def live_workers(self) -> list[dict]:
        out = []
        d = self.workers_dir()
        if not d.is_dir():
            return out
        for p in d.glob("worker-*.json"):
            info = read_json(p)
            if not info:
                continue
            fresh = time.time() - float(info.get("heartbeat", 0)) < STALE_S
            local = info.get("host") == socket.gethostname()
            if fresh and (not local or pid_alive(int(info.get("pid", 0)))):
                out.append(info)
        return out


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
