"""Runs specs to completion through the run store: teachers first, reused when finished.

The same path serves ``kdengine train``, the background worker and studies, so a headless run and a
TUI-launched run are the same thing. Claiming a run is atomic (a store-wide lock), so two workers never
train the same run; a run that another process is training is waited for, not trained again.

A run that failed is trained again only when someone asks (``requeue=True``: ``kdengine train``, ``study
run``, the TUI's launch and retry): a worker never retries a failed run, and a student whose teacher
failed waits, saying why, instead of retrying the teacher in a loop.
"""
from __future__ import annotations

import gc
import os
import threading
import time
from typing import Callable

import torch

from ..errors import Interrupted, KDError, RunFailed
from ..reports.figures import write_run_figures
from ..runspec import RunSpec
from ..store import RunStore, runstore
from ..store import events as ev
from ..store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED
from ..store.queue import enqueue
from ..store.runstore import serves
from ..training.device import DeviceSetup
from ..training.inputs import release_resident
from ..training.trainer import Stopped, Trainer
from .packing import CONTEXT_BYTES, OOM, OOM_ALONE, memory_key, record_oom, reserved_on
from .placement import MemoryPeak

WAIT_POLL_S = 2.0


class TeacherUnavailable(RunFailed):
    """A teacher failed, was stopped or is damaged: its student cannot start until it is retried."""


class Requeued(RunFailed):
    """The run went back to the queue (out of GPU memory beside other runs): not a failure."""


def ensure_finished(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: Callable[[], list] = list,
                    progress: bool = True, worker: str = "cli", log: Callable[[str], None] = print,
                    requeue: bool = True, dispatched: bool = False, placement=None) -> dict:
    """Return the metrics of ``spec``'s run, training it (and its teachers) only if needed.

    With ``requeue`` (an explicit request) failed or stopped runs are queued again and resume.
    ``dispatched``: a dispatcher gave this run to this process alone (see ``RunStore.claim``).
    ``placement``: a packed CUDA worker's admission (``worker.Placement``): a run is claimed only when its
    memory fits beside the others on the GPU (``store.runstore.Busy`` otherwise).
    """
    if requeue:
        enqueue(store, spec, requeue=True, device=dev.asked or dev.device.type)  # queues the teachers too
    return _ensure(store, spec, dev, trackers, progress, worker, log, dispatched, placement)


def _ensure(store: RunStore, spec: RunSpec, dev: DeviceSetup, trackers: Callable[[], list], progress: bool,
            worker: str, log: Callable[[str], None], dispatched: bool = False, placement=None) -> dict:
    rid = spec.run_id
    for t in spec.teachers:
        try:
            _ensure(store, t, dev, trackers, progress, worker, log, dispatched, placement)
        except RunFailed as exc:
            raise TeacherUnavailable(f"teacher {t.run_id} is not available: {exc}") from None
    waited = False
    while True:
        status = store.read_status(rid)
        state = status.state
        if state == FINISHED:
            metrics = store.read_metrics(rid)
            if metrics is None:
                raise RunFailed(f"{rid} is marked finished but its metrics.json is missing: "
                                f"kdengine runs doctor explains, kdengine runs retry {rid} trains it again")
            if not waited:
                log(f"reusing finished run {rid} ({spec.describe()}){thread_note(metrics)}")
            return metrics
        if state == RUNNING and not dispatched:
            if not waited:
                log(f"waiting for {rid}: another worker is training it")
                waited = True
            time.sleep(WAIT_POLL_S)
            continue
        if state in (FAILED, STOPPED) and not (dispatched and status.stale):
            raise RunFailed(f"{rid} is {state}" + (f" ({status.reason})" if status.reason else "")
                            + f"; retry it with: kdengine runs retry {rid}")
        neighbours = [0]  # runs beside it on its GPU when it was admitted (an OOM then is a crowding OOM)

        def admit():
            ok, why = placement.admit(spec)
            neighbours[0] = reserved_on(store, placement.gpu)[1]
            return ok, why

        extra = placement.reservation(spec) if placement is not None else {}
        if store.claim(rid, worker, dev.device.type, dispatched=dispatched,
                       admit=admit if placement is not None else None, **extra):
            return run_claimed(store, spec, dev, trackers(), progress, log, placement, neighbours[0])
        status = store.read_status(rid)
        if status.state == QUEUED and not serves(dev.device.type, status.device):
            raise RunFailed(f"{rid} is queued for {status.device}; this process trains on {dev.device.type}")


def thread_note(metrics: dict) -> str:
    """A note when a run was trained on the CPU with another thread count than this process uses."""
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
                log: Callable[[str], None], placement=None, neighbours: int = 0) -> dict:
    """Train a claimed run to its end. ``neighbours``: the runs beside it on its GPU when it was admitted."""
    rid = spec.run_id
    log(f"training {rid}: {spec.describe()}")
    out_of_memory = False
    trainer = None
    peak = MemoryPeak(store)
    try:
        with Heartbeat(store, rid) as beat:
            trainer = Trainer(store, spec, dev, hooks=[peak], progress=progress, log=log, beat=beat,
                              trackers=trackers)
            metrics = trainer.run()
            peak.record(trainer)  # the end's evaluation (every split, the best weights) may have grown it
            figures = draw_figures(store, spec, metrics, log)
            # metrics.json last of the run's own files: with the best checkpoint it marks the run finished
            store.write_predictions(rid, trainer.predictions)
            store.write_metrics(rid, metrics)
            for tr in trackers:
                tr.log_final(metrics, figures)
    except Stopped:
        store.finish(rid, STOPPED, "stopped by the user")
        raise RunFailed(f"{rid} was stopped") from None
    except KeyboardInterrupt:  # ctrl-c: stopped, resumable from its last finished epoch; not a failure
        _stop_quietly(store, rid, f"interrupted (ctrl-c); resume it with: kdengine runs retry {rid}")
        raise Interrupted(f"{rid} stopped (resumable from its last finished epoch)") from None
    except (RunFailed, KDError) as exc:
        _finish_quietly(store, rid, str(exc))
        raise
    except BaseException as exc:  # a crash: keep the reason, keep the traceback
        if placement is not None and _is_oom(exc, _free_share(dev) if dev.is_cuda else None):
            out_of_memory = True  # handled below, once this frame has let go of the run's tensors
        else:
            _finish_quietly(store, rid, f"{exc.__class__.__name__}: {exc}".strip()[:500])
            raise
    finally:
        for tr in trackers:
            try:
                tr.close()
            except Exception as exc:  # a tracker must not lose a finished run
                log(f"warning: tracker {tr.__class__.__name__} failed to close: {exc}")
        trainer = None  # noqa: F841 - its model, optimiser, graphs and batches go before the cache is emptied
        release_device_memory(dev)
    if out_of_memory:
        _out_of_memory(store, spec, placement, log, neighbours)
    store.finish(rid, FINISHED)
    # A finished run needs no resume state: keep best.safetensors, drop last.pt (with the optimizer
    # state it is 3-4x the weights: 2 GB for VGG11).
    (store.checkpoint_dir(rid) / "last.pt").unlink(missing_ok=True)
    return metrics


FIGURES_ENV = "KDSTUDY_RUN_FIGURES"


def draw_figures(store: RunStore, spec: RunSpec, results: dict, log: Callable[[str], None]) -> list:
    """Curves, confusion matrix and reliability diagram as PNGs beside the metrics; a failure to draw them
    is a warning, never a failed run. ``KDSTUDY_RUN_FIGURES=0`` skips them (about half a second a run: a sweep
    of hundreds of small runs on a cluster); ``kdengine report`` draws the ones it shows when they are missing."""
    if os.environ.get(FIGURES_ENV, "1") == "0":
        return []
    try:
        return write_run_figures(store.run_dir(spec.run_id), store.events(spec.run_id), results, spec.describe())
    except Exception as exc:  # noqa: BLE001 - figures are a view of the results, not the results
        msg = f"figures not drawn: {exc.__class__.__name__}: {str(exc)[:200]}"
        log(f"warning: {msg}")
        store.append_event(spec.run_id, ev.Warning(message=msg))
        return []


# What an allocation failure on the card says, whichever library met it: the caching allocator
# (torch.cuda.OutOfMemoryError), cuBLAS creating a handle or its workspace, cuDNN its workspace, the runtime
# creating a context or a stream.
OOM_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
               "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE", "cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY")
MAX_OOM_REQUEUES = 4  # a run sent back for memory this many times then waits for an empty card: never a loop


# A graph capture that ran out of memory seldom says so: the allocator's error is raised inside the capture, and
# ending the capture then fails with one of these, the out-of-memory only in the chained exception (``__context__``)
# or nowhere. Such a failure counts as an out-of-memory when the card is nearly full (CAPTURE_OOM_FREE).
CAPTURE_MARKERS = ("cudaErrorStreamCaptureInvalidated", "cudaErrorStreamCaptureUnsupported",
                   "operation not permitted when stream is capturing", "CUDA_ERROR_STREAM_CAPTURE",
                   "operation failed due to a previous error during capture")
CAPTURE_OOM_FREE = 0.10  # of the card's memory free, or less, when a capture failed: it failed for want of memory


def _is_oom(exc: BaseException, free_share=None) -> bool:
    """Whether ``exc`` (or an exception it was raised from or while handling) is the card running out of memory.
    ``free_share()``: the share of the card's memory free now (a failed capture is an OOM when it is small)."""
    seen, chain = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
        if isinstance(e, RuntimeError) and any(m in str(e) for m in OOM_MARKERS):
            return True
    if free_share is not None and any(isinstance(e, RuntimeError) and any(m in str(e) for m in CAPTURE_MARKERS)
                                      for e in chain):
        try:
            return free_share() <= CAPTURE_OOM_FREE
        except Exception:  # noqa: BLE001 - a card that cannot even say its free memory: not ours to judge
            return False
    return False


def _free_share(dev: DeviceSetup):
    """The share of ``dev``'s memory free now (driver-wide: other processes' use included), for :func:`_is_oom`."""
    def share() -> float:
        free, total = torch.cuda.mem_get_info(dev.device)
        return free / max(1, total)
    return share


def release_device_memory(dev: DeviceSetup) -> None:
    """After a run: drop the device-resident image cache (``--device-input``: up to a quarter of the card, which
    the ledger counts only while a run holds it), collect what the run left (its tensors may sit in reference
    cycles) and hand the CUDA cache back, so the next run, or a neighbour, has the memory (a worker otherwise keeps
    its peak for good)."""
    if dev.is_cuda:
        release_resident()
        gc.collect()
        torch.cuda.empty_cache()


def _oom_requeues(store: RunStore, rid: str) -> tuple[int, bool]:
    """(times the run went back to the queue for memory, whether the last of them was to wait for an empty card),
    since it was last retried by hand."""
    count, alone = 0, False
    for e in store.read_events(rid)[0]:
        why = e.get("requeued_from")
        if why in (OOM, OOM_ALONE):
            count, alone = count + 1, why == OOM_ALONE
        elif why:  # a retry of a failed or stopped run starts the count again
            count, alone = 0, False
    return count, alone


def _out_of_memory(store: RunStore, spec: RunSpec, placement, log: Callable[[str], None],
                   neighbours: int = 0) -> None:
    """CUDA out-of-memory. Beside other runs (at its admission, or now) it goes back to the queue with a larger
    need, at most MAX_OOM_REQUEUES times; then once more, to wait for an empty card (its need becomes the whole
    card: ``Placement.need``). Alone on the card from start to end it does not fit, and crowded even while it
    waited for an empty card (by a process outside this store): both are failures, saying so; never a loop."""
    rid = spec.run_id
    _, running = reserved_on(store, placement.gpu)
    crowded = max(neighbours, running - 1)
    mine = placement.reservation(spec)["reserved_bytes"]
    tries, alone = _oom_requeues(store, rid)
    if crowded == 0:
        reason = (f"out of GPU memory alone on the card (more than {placement.capacity / 2**30:.0f} GiB): use a "
                  "smaller --batch-size or --image-size")
    elif alone:
        reason = (f"out of GPU memory beside {crowded} run(s) although it waited for an empty card (sent back "
                  f"{tries} times): something outside this run store shares the GPU; run it where it is alone")
    elif tries >= MAX_OOM_REQUEUES:
        reason = (f"out of GPU memory {tries + 1} times beside other runs: queued again to wait for an empty card "
                  f"(it runs alone next)")
        store.back_to_queue(rid, reason, OOM_ALONE)
        log(f"{rid}: {reason}")
        raise Requeued(f"{rid}: {reason}")
    else:
        # the ledger's claim holds the CUDA context, which need() adds again: the allocator's part alone grows
        record_oom(store, placement.key(spec) if hasattr(placement, "key") else memory_key(spec),
                   max(0, mine - CONTEXT_BYTES))
        reason = (f"out of GPU memory beside {crowded} run(s): queued again for a less crowded slot "
                  f"({tries + 1} of {MAX_OOM_REQUEUES})")
        store.back_to_queue(rid, reason, OOM)
        log(f"{rid}: {reason}")
        raise Requeued(f"{rid}: {reason}")
    _finish_quietly(store, rid, reason)
    raise RunFailed(f"{rid}: {reason}")


def _stop_quietly(store: RunStore, rid: str, reason: str) -> None:
    try:
        store.finish(rid, STOPPED, reason)
    except (OSError, KDError):
        pass


def _finish_quietly(store: RunStore, rid: str, reason: str) -> None:
    """Record a failure; if even that cannot be written (a full disk), the dead process reads as interrupted."""
    try:
        store.finish(rid, FAILED, reason)
    except (OSError, KDError):
        pass
