"""Runs specs to completion through the run store: teachers first, reused when finished.

The same path serves ``kdengine train``, the background worker and studies, so
a headless run and a TUI-launched run are the same thing. Claiming a run is
atomic (a store-wide lock), so two workers never train the same run; a run
that another process is training is waited for, not trained again.
"""
from __future__ import annotations

import time
from typing import Callable

from ..errors import KDError, RunFailed
from ..runspec import RunSpec
from ..store import RunStore
from ..store.queue import enqueue
from .device import DeviceSetup

WAIT_POLL_S = 2.0


def ensure_finished(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: Callable[[], list] = list,
                    progress: bool = True, worker: str = "cli", log: Callable[[str], None] = print) -> dict:
    """Return the metrics of ``spec``'s run, training it (and its teachers) only if needed.

    A failed or stopped run asked for again is queued again and resumes (``enqueue``).
    """
    enqueue(store, spec)  # queues the teachers too
    return _ensure(store, spec, dev, trackers, progress, worker, log)


def _ensure(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: Callable[[], list], progress: bool,
            worker: str, log: Callable[[str], None]) -> dict:
    rid = spec.run_id
    for t in spec.teachers:
        _ensure(store, t, dev, trackers, progress, worker, log)
    waited = False
    while True:
        status = store.read_status(rid)
        state = status["state"]
        if state == "finished":
            metrics = store.read_metrics(rid)
            if metrics is not None:
                if not waited:
                    log(f"reusing finished run {rid} ({spec.describe()})")
                return metrics
        if state == "running":
            if not waited:
                log(f"waiting for {rid}: another worker is training it")
                waited = True
            time.sleep(WAIT_POLL_S)
            continue
        if store.claim(rid, worker, force=(state == "finished")):
            return run_claimed(store, spec, dev, trackers(), progress, log)


def run_claimed(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: list, progress: bool,
                log: Callable[[str], None]) -> dict:
    from .trainer import Stopped, Trainer

    rid = spec.run_id
    log(f"training {rid}: {spec.describe()}")
    try:
        metrics = Trainer(store, spec, dev, trackers, progress=progress, log=log).run()
    except Stopped:
        store.finish(rid, "stopped", "stopped by the user")
        raise RunFailed(f"{rid} was stopped") from None
    except (RunFailed, KDError) as exc:
        store.finish(rid, "failed", str(exc))
        raise
    except BaseException as exc:  # a crash: keep the reason, keep the traceback
        store.finish(rid, "failed", f"{exc.__class__.__name__}: {exc}".strip()[:500])
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
