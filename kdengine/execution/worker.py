"""``kdengine worker``: claims queued runs from the store and trains them, one at a time.

Runs are claimed under the store's lock, so two workers never take the same run. The worker advertises
itself in ``.workers/worker-<pid>.json`` with a heartbeat; it exits after ``idle_exit`` seconds with
nothing to do. It never retries a failed run (a person does, with ``kdengine runs retry``), a student
whose teacher failed waits and says why, a run whose spec is damaged is marked so and skipped, and a
full disk stops the worker instead of failing the queue run after run.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import traceback

from ..atomic import DiskFull, write_json
from ..errors import KDError, RunFailed
from ..store import RunStore, runstore
from ..store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED
from ..store.liveness import process_start
from ..store.runstore import Busy, serves

TEACHER_BUSY = object()  # a teacher is being trained elsewhere (or must be, on another device)


def next_claimable(store: RunStore, device: str | None = None, fits=None):
    """The oldest queued run this worker can serve (``device``: the kind it trains on) whose teachers are
    finished, or queued and servable here (not being trained elsewhere), and (``fits``, a packed CUDA
    worker) whose memory fits beside the other runs on its GPU now.

    A queued run whose spec cannot be read is marked failed (damaged) and skipped; a student whose teacher
    failed or was stopped is left queued with the reason."""
    for rid in store.list_ids():
        status = store.read_status(rid)
        if status.state != QUEUED or not serves(device, status.device):
            continue
        try:
            spec = store.load_spec(rid)
        except KDError as exc:
            store.finish(rid, FAILED, f"damaged: {exc} (kdengine runs doctor)")
            continue
        blocked = _blocked_by(store, spec, device)
        if blocked == TEACHER_BUSY:
            continue
        if blocked:
            store.note_waiting(rid, blocked)
            continue
        if fits is not None:
            first = next((t for t in _unfinished_teachers(store, spec)), spec)  # what this claim trains first
            ok, why = fits(first)
            if not ok:
                store.note_waiting(rid, why)
                continue
        return spec
    return None


def _unfinished_teachers(store: RunStore, spec):
    for t in spec.teachers:
        yield from _unfinished_teachers(store, t)
        if store.read_status(t.run_id).state != FINISHED:
            yield t


def _blocked_by(store: RunStore, spec, device: str | None = None) -> str | None:
    """Why a run cannot start now: TEACHER_BUSY (a teacher is being trained elsewhere, or must be: it asks for
    another device), or a teacher that failed."""
    for t in spec.teachers:
        status = store.read_status(t.run_id)
        if status.state == RUNNING or (status.state == QUEUED and not serves(device, status.device)):
            return TEACHER_BUSY
        if status.state in (FAILED, STOPPED) or not store.exists(t.run_id):
            why = status.reason or ("not in the store" if not store.exists(t.run_id) else status.state)
            return (f"waiting: teacher {t.run_id} is {status.state} ({why}); "
                    f"retry it with: kdengine runs retry {t.run_id}")
        deeper = _blocked_by(store, t, device)
        if deeper:
            return deeper
    return None


class Worker:
    def __init__(self, store: RunStore, device: str = "auto", idle_exit: float = 30.0, once: bool = False,
                 loader_workers: int | None = None, fast: dict | None = None) -> None:
        self.store = store
        self.device = device
        self.idle_exit = idle_exit
        self.once = once
        self.loader_workers = loader_workers
        self.fast = fast or {}
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.info_path = store.workers_dir() / f"worker-{os.getpid()}.json"
        self.current: str | None = None
        self._stop = threading.Event()

    def _advertise(self) -> None:
        while not self._stop.is_set():
            try:
                write_json(self.info_path, {"pid": os.getpid(), "pid_start": process_start(os.getpid()),
                                            "host": socket.gethostname(), "device": self.device,
                                            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                            "heartbeat": time.time(), "current": self.current})
            except (OSError, KDError):
                pass  # a full disk: the run in progress will say so
            self._stop.wait(runstore.HEARTBEAT_S)

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}", flush=True)

    def run(self) -> int:
        from ..training.device import (
            setup_device,  # torch: `kdengine worker --detach` and the TUI start workers without it
        )
        from .executor import ensure_finished

        dev = setup_device(self.device, self.loader_workers, **self.fast)
        from .placement import Placement  # torch: only a CUDA worker places runs

        placement = Placement(self.store, dev) if dev.is_cuda else None
        self.store.workers_dir().mkdir(parents=True, exist_ok=True)
        beat = threading.Thread(target=self._advertise, daemon=True)
        beat.start()
        self.log(f"worker {self.name} on {dev.device} watching {self.store.root}")
        idle_since = time.time()
        done, code = 0, 0
        try:
            while True:
                spec = next_claimable(self.store, dev.device.type, placement.fits if placement else None)
                if spec is None:
                    if self.once or time.time() - idle_since > self.idle_exit:
                        break
                    time.sleep(1.0)
                    continue
                self.current = spec.run_id
                try:
                    ensure_finished(self.store, spec, dev, progress=True, worker=self.name, log=self.log,
                                    requeue=False, placement=placement)
                    done += 1
                except Busy:  # another worker took the room first: look again
                    time.sleep(1.0)
                except DiskFull as exc:
                    self.log(f"{spec.run_id}: {exc}")
                    self.log("the disk is full: this worker stops claiming runs (the queue keeps them)")
                    code = 2
                    break
                except (RunFailed, KDError) as exc:
                    self.log(f"{spec.run_id}: {exc}")
                except Exception as exc:  # noqa: BLE001 - one broken run must not kill the worker

                    traceback.print_exc()
                    self.log(f"{spec.run_id} crashed: {exc}")
                self.current = None
                idle_since = time.time()
        finally:
            self._stop.set()
            try:
                self.info_path.unlink()
            except OSError:
                pass
        self.log(f"worker {self.name} exits after {done} run(s)")
        return code
