"""One directory per run: spec.json, status.json, events.jsonl, metrics.json, checkpoints/.

See docs/run-store.md. Every file but the event log is replaced atomically; the
event log is append-only, and readers tolerate a torn last line. Nothing here
imports torch, so the TUI and the table exports stay light.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

from ..atomic import atomic_path, disk_errors, lenient_json_default, remove_temp_files, write_json
from ..errors import KDError, UsageError
from ..runspec import STORE_VERSION, RunSpec
from . import events as ev
from .lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STATES, STOPPED, State, check
from .liveness import pid_alive, process_start
from .status import RunStatus

HEARTBEAT_S = 5.0  # how often a running run refreshes its heartbeat (a thread does, whatever the run is doing)
STALE_S = 120.0  # a heartbeat older than this means the process is gone (or hung)
SPEC, STATUS, EVENTS, METRICS, STOP = "spec.json", "status.json", "events.jsonl", "metrics.json", "stop.request"
SHIFT, EXPLAIN = "shift.json", "explain.json"  # a finished run's later results: under shift, its attention maps
PREDICTIONS = "predictions.npz"  # per image of val and test: the best weights' class probabilities (written once)
PREDICTED_SPLITS = ("val", "test")
DEVICES = ("auto", "cpu", "cuda")  # what a run may ask for; a worker serves "auto" and its own kind
# status keys that outlive a change of state: where it was asked to train and trained, and how far it got (a
# stopped run shows the epoch it resumes after)
KEPT = ("device", "trained_on", "progress")
BEST = "checkpoints/best.safetensors"


class Busy(Exception):
    """A claim refused for now: the run does not fit beside the others on its GPU (packing's admission)."""


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
    def create(self, spec, device: str = "auto") -> bool:
        """Write a queued run for a RunSpec, asking for ``device``; False (and nothing changed) if it exists."""
        run_id = spec.run_id
        with self.lock():
            if self.exists(run_id):
                return False
            d = self.run_dir(run_id)
            d.mkdir(parents=True, exist_ok=True)
            now = time.time()
            self._transition(run_id, None, QUEUED, device=device_kind(device))
            write_json(d / SPEC, {"run_id": run_id, "spec_hash": spec.spec_hash(), "store_version": STORE_VERSION,
                                  "created": now, "describe": spec.describe(), "spec": spec.to_dict()})
            return True

    # -- reading -------------------------------------------------------------------
    def read_spec_file(self, run_id: str) -> dict | None:
        """spec.json as written: run_id, spec_hash, created, describe and the spec itself."""
        return read_json(self.run_dir(run_id) / SPEC)

    def load_spec(self, run_id: str):
        """The run's RunSpec; UsageError naming the fault when spec.json is missing or damaged."""

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
        """The event log's lines as dicts, from ``offset`` (for tailing); :meth:`events` types them."""
        return read_jsonl(self.run_dir(run_id) / EVENTS, offset)

    def events(self, run_id: str) -> list[ev.Event]:
        """The whole event log, typed (``store/events.py``)."""
        return ev.parse_all(self.read_events(run_id)[0])

    def read_status(self, run_id: str) -> RunStatus:
        """Where a run stands, from the best evidence the store holds (typed: ``store/status.py``).

        - A run with ``metrics.json`` and its best checkpoint is finished, whatever status.json says
          (a status lost to a crash or a bad disk never sends finished work back to the queue).
        - An unreadable status.json is rebuilt from the event log's last lifecycle event.
        - A ``running`` run whose process is gone (or whose heartbeat stopped) reads as ``failed``
          with ``stale: true`` and the reason: it was interrupted, and resumes when asked to.
        """
        d = self.run_dir(run_id)
        status = read_json(d / STATUS)
        if not isinstance(status, dict) or status.get("state") not in STATES:
            status = self._status_from_events(run_id)
        if status["state"] != FINISHED and (d / BEST).is_file() and isinstance(read_json(d / METRICS), dict):
            return RunStatus.from_dict({**status, "state": FINISHED.value, "reason": None, "note":
                                        f"status.json said {status['state']}; metrics and best checkpoint show it "
                                        "finished"})
        if status["state"] == RUNNING:
            dead = self._dead_reason(status)
            if dead:
                status = {**status, "state": FAILED.value, "reason": dead, "stale": True}
        return RunStatus.from_dict(status)

    def _status_from_events(self, run_id: str) -> dict:
        events, _ = self.read_events(run_id)
        last = next((e for e in reversed(events) if e.get("type") == "lifecycle" and e.get("state") in STATES), None)
        if last is None:
            return {"state": QUEUED.value, "reason": None, "recovered": "status.json unreadable; no lifecycle event"}
        status = {"state": last["state"], "reason": last.get("reason"), "updated": last.get("t"),
                  "recovered": "status.json unreadable; rebuilt from the event log"}
        if last["state"] == RUNNING:
            status.update(pid=last.get("pid"), pid_start=last.get("pid_start"), host=last.get("host"),
                          heartbeat=last.get("t"))
        return status

    def _dead_reason(self, status: dict) -> str | None:
        """A running run is alive when its process is (pid and start time, on this host) and its heartbeat is
        fresh; on another host, the heartbeat alone decides."""
        beat = float(status.get("heartbeat") or status.get("updated") or 0)
        age = time.time() - beat
        if status.get("host") == socket.gethostname() and status.get("pid"):
            try:
                pid = int(status["pid"])
            except (TypeError, ValueError):
                return "status.json names no valid pid"
            if not pid_alive(pid, status.get("pid_start")):
                return f"interrupted: its process (pid {pid}) is gone; last heartbeat {age:.0f}s ago"
        if age > STALE_S:
            return f"interrupted: no heartbeat for {age:.0f}s (the process is gone or hung)"
        return None

    # -- writing ---------------------------------------------------------------------
    # -- state changes: every one goes through _transition ----------------------------------------------
    def _transition(self, run_id: str, current: str | None, to: State, reason: str | None = None,
                    event: dict | None = None, **status: Any) -> None:
        """Change a run's state (the lifecycle refuses an illegal change): status.json, then a lifecycle event."""
        check(current, to)
        self.write_status(run_id, to, reason, **status)
        self.append_event(run_id, ev.Lifecycle(state=str(to), reason=reason, **(event or {})))

    def transition(self, run_id: str, to: State, reason: str | None = None, event: dict | None = None,
                   **status: Any) -> None:
        """Change a run's state from the one its status records (its owner's view: a run that has just written
        its metrics still records ``running`` until it says ``finished``)."""
        self._transition(run_id, self.recorded_state(run_id), to, reason, event, **status)

    def recorded_state(self, run_id: str) -> str:
        """The state status.json records (rebuilt from the event log when unreadable), before any evidence."""
        status = read_json(self.run_dir(run_id) / STATUS)
        if isinstance(status, dict) and status.get("state") in STATES:
            return status["state"]
        return self._status_from_events(run_id)["state"]

    def write_status(self, run_id: str, state: str, reason: str | None = None, **extra: Any) -> None:
        """Replace the status (no state check: :meth:`transition` changes states); the device asked for and the
        device trained on are kept unless given."""
        assert state in STATES, state
        now = time.time()
        current = read_json(self.run_dir(run_id) / STATUS)
        kept = {k: current[k] for k in KEPT if isinstance(current, dict) and k in current}
        status = {"state": str(state), "reason": reason, "updated": now, **kept, **extra}
        if state == RUNNING:
            status.setdefault("pid", os.getpid())
            status.setdefault("pid_start", process_start(os.getpid()))
            status.setdefault("host", socket.gethostname())
            status.setdefault("heartbeat", now)
        write_json(self.run_dir(run_id) / STATUS, status)

    def heartbeat(self, run_id: str, **extra: Any) -> None:
        """Refresh a running run's heartbeat (and progress). Only the process that claimed it calls this."""
        current = read_json(self.run_dir(run_id) / STATUS)
        if not isinstance(current, dict) or current.get("state") != RUNNING:
            return  # finished, or taken away: never resurrect a status
        current.update(extra)
        current["heartbeat"] = current["updated"] = time.time()
        write_json(self.run_dir(run_id) / STATUS, current)

    def append_event(self, run_id: str, event: "ev.Event | dict[str, Any]") -> None:
        """Append one JSON line; first mends a torn last line left by a crashed writer."""
        path = self.run_dir(run_id) / EVENTS
        record = event.to_dict() if isinstance(event, ev.Event) else event
        line = json.dumps({"t": round(time.time(), 3), **record}, default=lenient_json_default, separators=(",", ":"))
        with disk_errors(path):
            self._append(path, line)

    @staticmethod
    def _append(path: Path, line: str) -> None:
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

    def write_predictions(self, run_id: str, splits: dict[str, dict[str, Any]]) -> None:
        """predictions.npz, once and atomically, before metrics.json: per split (val, test) the image's index in
        the split, its cache row, its label (a class; for a multi-label task 0/1 per finding, -1 where not
        known), the prediction (the argmax of the float32 probabilities, so it agrees with metrics.json exactly;
        multi-label: each finding at 0.5) and the probabilities as float32 (the ranking metrics recomputed from
        them are metrics.json's)."""
        import numpy as np  # numpy: only a finishing run writes them

        arrays = {}
        for split, p in splits.items():
            probs = np.asarray(p["probs"], np.float32)
            labels = np.asarray(p["labels"])
            arrays[f"{split}_index"] = np.arange(len(probs), dtype=np.int32)
            arrays[f"{split}_row"] = np.asarray(p["rows"], dtype=np.int64)
            arrays[f"{split}_label"] = labels.astype(np.int16)
            if labels.ndim == 2:
                arrays[f"{split}_pred"] = (probs >= 0.5).astype(np.int16)
            else:
                arrays[f"{split}_pred"] = probs.argmax(1).astype(np.int16) if len(probs) else np.zeros(0, np.int16)
            arrays[f"{split}_probs"] = probs
        with atomic_path(self.run_dir(run_id) / PREDICTIONS) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    # -- lifecycle -----------------------------------------------------------------
    def claim(self, run_id: str, worker: str, device: str | None = None, dispatched: bool = False,
              admit=None, **extra: Any) -> bool:
        """Move a queued run to running for this process; False if it is not queued, or asks for another device
        than ``device`` (the kind this process trains on: a CPU worker never takes a run queued for CUDA).

        ``dispatched``: a dispatcher (the Ray driver) handed this run to this process alone, so no file lock is
        taken (flock over NFS is not reliable), and a run still marked running, or interrupted, is taken over at
        once: the dispatcher only hands a run out again when the node that had it is dead.

        Only queued runs are claimed. A failed, stopped or interrupted run goes back to the queue
        only when someone asks (``requeue``): a run that fails is never retried in a loop. Temp files
        left by a write that was killed are removed here, before the run resumes.

        ``admit()`` -> (ok, why), asked under the lock, may refuse a queued run for now (raises
        :class:`Busy`); ``extra`` goes into the running status (the GPU and the memory it reserves).
        """
        with (contextlib.nullcontext() if dispatched else self.lock()):
            status = self.read_status(run_id)
            takeover = dispatched and (status.state == RUNNING or status.stale)
            if (status.state != QUEUED and not takeover) or not serves(device, status.device):
                return False
            if admit is not None:
                ok, why = admit()
                if not ok:
                    raise Busy(why)
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir(run_id) / STOP).unlink()
            remove_temp_files(self.run_dir(run_id))
            self._transition(run_id, status.state, RUNNING, worker=worker,
                             event={"worker": worker, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                                    "host": socket.gethostname(), "resumed_from": status.requeued_from},
                             **extra)
            return True

    def back_to_queue(self, run_id: str, reason: str, why: str) -> None:
        """A running run that cannot go on here for now (out of GPU memory beside others) waits in the queue
        again; it resumes from its last finished epoch."""
        self.transition(run_id, QUEUED, reason, event={"requeued_from": why}, requeued_from=why)

    def finish(self, run_id: str, state: str, reason: str | None = None) -> None:
        """End a run: finished, failed or stopped (or a queued run stopped or found damaged)."""
        self.transition(run_id, State(state), reason)

    def requeue(self, run_id: str, device: str | None = None) -> bool:
        """Queue a failed, stopped or interrupted run again (it resumes from its last finished epoch); a queued
        run asked for again takes the new device request. True when the run is (again) queued."""
        with self.lock():
            status = self.read_status(run_id)
            extra = {"device": device_kind(device)} if device else {}
            if status.state == QUEUED:
                if extra and status.device != extra["device"]:
                    self._transition(run_id, QUEUED, QUEUED, status.reason, event=extra, **extra)
                return False
            if status.state not in (FAILED, STOPPED):
                return False
            self._transition(run_id, status.state, QUEUED, event={"requeued_from": status.state.value, **extra},
                             requeued_from=status.state.value, **extra)
            return True

    def note_waiting(self, run_id: str, reason: str) -> None:
        """Say why a queued run cannot start (its teacher failed), once."""
        with self.lock():
            status = self.read_status(run_id)
            if status.state == QUEUED and status.reason != reason:  # a note, not a change: no event
                check(QUEUED, QUEUED)
                self.write_status(run_id, QUEUED, reason, **({"requeued_from": status.requeued_from}
                                                             if status.requeued_from else {}))

    def request_stop(self, run_id: str) -> str:
        """Ask a run to stop: a running run stops within a heartbeat; a queued one stops now."""
        with self.lock():
            status = self.read_status(run_id)
            state = status.state
            if state == QUEUED:
                done = int(status.progress.get("epochs_done") or 0)  # queued again after some epochs
                self._transition(run_id, QUEUED, STOPPED, "stopped before it started" if not done else
                                 f"stopped while queued again; it resumes after epoch {done}")
                return "stopped"
            if state == RUNNING:
                (self.run_dir(run_id) / STOP).write_text(str(time.time()))
                return "stopping"
            return state.value

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / STOP).exists()

    def dependents(self, run_id: str) -> list[str]:
        """Runs that name ``run_id`` as a teacher (they could not be resumed or re-evaluated without it)."""
        out = []
        for rid in self.list_ids():
            header = self.read_spec_file(rid)
            spec = header.get("spec") if isinstance(header, dict) else None
            if isinstance(spec, dict) and run_id in _teacher_ids(spec):
                out.append(rid)
        return out

    def remove(self, run_id: str, archive: bool = False) -> Path | None:
        """Delete a run's folder, or move it to ``.archive/`` (returns where it went). Never a running run."""
        with self.lock():
            if self.read_status(run_id).state == RUNNING:
                raise UsageError(f"{run_id} is running: stop it first", field="run_id")
            src = self.run_dir(run_id)
            if archive:
                dest = self.root / ".archive" / f"{run_id}-{time.strftime('%Y%m%d-%H%M%S')}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
                return dest
            shutil.rmtree(src)
            return None

    # -- workers ---------------------------------------------------------------------
    def live_workers(self) -> list[dict]:
        out = []
        d = self.workers_dir()
        if not d.is_dir():
            return out
        for p in d.glob("worker-*.json"):
            info = read_json(p)
            if not isinstance(info, dict):
                continue
            try:
                fresh = time.time() - float(info.get("heartbeat", 0)) < STALE_S
                local = info.get("host") == socket.gethostname()
                if fresh and (not local or pid_alive(int(info.get("pid", 0)), info.get("pid_start"))):
                    out.append(info)
            except (TypeError, ValueError):
                continue
        return out


def _teacher_ids(spec: dict) -> set[str]:
    """Run ids of a spec dict's teachers, read without building RunSpecs (a damaged spec yields none)."""
    try:
        return {t.run_id for t in RunSpec.from_dict(spec).teachers}
    except (KDError, TypeError, ValueError):
        return set()


def device_kind(device: str | None) -> str:
    """"cuda:1" -> "cuda"; None -> "auto"."""
    kind = (device or "auto").split(":", 1)[0]
    return kind if kind in DEVICES else "auto"


def serves(worker_device: str | None, requested: str | None) -> bool:
    """Whether a process training on ``worker_device`` (None: whatever it is) may take a run asking for ``requested``."""
    requested = device_kind(requested)
    return worker_device is None or requested == "auto" or device_kind(worker_device) == requested


PREDICTION_ARRAYS = ("index", "row", "label", "pred", "probs")


def read_predictions(path: Path, arrays: tuple[str, ...] = PREDICTION_ARRAYS) -> dict[str, dict[str, Any]] | None:
    """A run's predictions.npz as {split: {index, row, label, pred, probs}} (numpy arrays; ``arrays``: only those),
    or None where the run has none (written before they were stored) or it is unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    import numpy as np  # numpy: only a reader of per-image predictions

    try:
        with np.load(path, allow_pickle=False) as z:
            return {split: {k: z[f"{split}_{k}"] for k in arrays}
                    for split in PREDICTED_SPLITS if f"{split}_pred" in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
