"""Runs specs to completion through the run store: teachers first, reused when finished.

The same path serves ``kdengine train``, the background worker and studies, so a headless run and a
TUI-launched run are the same thing. Claiming a run is atomic (a store-wide lock), so two workers never
train the same run; a run that another process is training is waited for, not trained again.

A run that failed is trained again only when someone asks (``requeue=True``: ``kdengine train``, ``study
run``, the TUI's launch and retry): a worker never retries a failed run, and a student whose teacher
failed waits, saying why, instead of retrying the teacher in a loop.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..errors import KDError, RunFailed
from ..runspec import RunSpec
from ..store import RunStore
from ..store import runstore
from ..store.runstore import serves
from ..store.queue import enqueue
from .device import DeviceSetup

WAIT_POLL_S = 2.0


class TeacherUnavailable(RunFailed):
    """A teacher failed, was stopped or is damaged: its student cannot start until it is retried."""


def ensure_finished(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: Callable[[], list] = list,
                    progress: bool = True, worker: str = "cli", log: Callable[[str], None] = print,
                    requeue: bool = True, dispatched: bool = False) -> dict:
    """Return the metrics of ``spec``'s run, training it (and its teachers) only if needed.

    With ``requeue`` (an explicit request) failed or stopped runs are queued again and resume.
    ``dispatched``: a dispatcher gave this run to this process alone (see ``RunStore.claim``).
    """
    if requeue:
        enqueue(store, spec, requeue=True, device=dev.device.type)  # queues the teachers too
    return _ensure(store, spec, dev, trackers, progress, worker, log, dispatched)


def _ensure(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: Callable[[], list], progress: bool,
            worker: str, log: Callable[[str], None], dispatched: bool = False) -> dict:
    rid = spec.run_id
    for t in spec.teachers:
        try:
            _ensure(store, t, dev, trackers, progress, worker, log, dispatched)
        except RunFailed as exc:
            raise TeacherUnavailable(f"teacher {t.run_id} is not available: {exc}") from None
    waited = False
    while True:
        status = store.read_status(rid)
        state = status["state"]
        if state == "finished":
            metrics = store.read_metrics(rid)
            if metrics is None:
                raise RunFailed(f"{rid} is marked finished but its metrics.json is missing: "
                                f"kdengine runs doctor explains, kdengine runs retry {rid} trains it again")
            if not waited:
                log(f"reusing finished run {rid} ({spec.describe()}){thread_note(metrics)}")
            return metrics
        if state == "running" and not dispatched:
            if not waited:
                log(f"waiting for {rid}: another worker is training it")
                waited = True
            time.sleep(WAIT_POLL_S)
            continue
        if state in ("failed", "stopped") and not (dispatched and status.get("stale")):
            raise RunFailed(f"{rid} is {state}" + (f" ({status['reason']})" if status.get("reason") else "")
                            + f"; retry it with: kdengine runs retry {rid}")
        if store.claim(rid, worker, dev.device.type, dispatched=dispatched):
            return run_claimed(store, spec, dev, trackers(), progress, log)
        status = store.read_status(rid)
        if status["state"] == "queued" and not serves(dev.device.type, status.get("device")):
            raise RunFailed(f"{rid} is queued for {status.get('device')}; this process trains on {dev.device.type}")


def thread_note(metrics: dict) -> str:
    """A note when a run was trained on the CPU with another thread count than this process uses."""
    import torch

    rt = metrics.get("runtime") or {}
    if rt.get("device") == "cpu" and rt.get("threads") not in (None, torch.get_num_threads()):
        return (f"; note: it was trained with {rt['threads']} CPU threads and this process uses "
                f"{torch.get_num_threads()} (CPU results repeat exactly only at the same thread count)")
    return ""


class Heartbeat:
    """Keeps a claimed run's heartbeat fresh from a thread, whatever the run is doing (decoding, a long
    evaluation), carries its latest progress into status.json, and notices a stop request, so that the
    training loop never touches the file system for either."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.progress: dict | None = None
        self.extra: dict = {}  # more to keep in status.json (where the run trains)
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._done.wait(runstore.HEARTBEAT_S):
            self.beat()

    def beat(self) -> None:
        try:
            extra = {"progress": self.progress} if self.progress is not None else {}
            self.store.heartbeat(self.run_id, **self.extra, **extra)
            if self.store.stop_requested(self.run_id):
                self.stop_requested.set()
        except (OSError, KDError):
            pass  # a full disk or a flaky NFS: the run itself will meet it and say so


def run_claimed(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: list, progress: bool,
                log: Callable[[str], None]) -> dict:
    from .trainer import Stopped, Trainer

    rid = spec.run_id
    log(f"training {rid}: {spec.describe()}")
    try:
        with Heartbeat(store, rid) as beat:
            metrics = Trainer(store, spec, dev, trackers, progress=progress, log=log, beat=beat).run()
    except Stopped:
        store.finish(rid, "stopped", "stopped by the user")
        raise RunFailed(f"{rid} was stopped") from None
    except (RunFailed, KDError) as exc:
        _finish_quietly(store, rid, str(exc))
        raise
    except BaseException as exc:  # a crash: keep the reason, keep the traceback
        _finish_quietly(store, rid, f"{exc.__class__.__name__}: {exc}".strip()[:500])
        raise
    finally:
        for tr in trackers:
            try:
                tr.close()
            except Exception as exc:  # a tracker must not lose a finished run
                log(f"warning: tracker {tr.__class__.__name__} failed to close: {exc}")
    store.finish(rid, "finished")
    # A finished run needs no resume state: keep best.safetensors, drop last.pt (with the optimizer
    # state it is 3-4x the weights: 2 GB for VGG11).
    (store.checkpoint_dir(rid) / "last.pt").unlink(missing_ok=True)
    return metrics


def _finish_quietly(store: RunStore, rid: str, reason: str) -> None:
    """Record a failure; if even that cannot be written (a full disk), the dead process reads as interrupted."""
    try:
        store.finish(rid, "failed", reason)
    except (OSError, KDError):
        pass
