"""``kdengine study run FILE --executor ray[=ADDRESS]``: a study across a Ray cluster.

Each run of the study is one Ray task (``ensure_finished`` of that run, nothing else), and a student's task
takes its teachers' tasks as arguments, so Ray starts it only once they are done. The driver is the one
dispatcher: it hands each run to exactly one task, so the tasks take no file lock (flock over NFS is not
reliable), and when Ray declares a node dead and retries its task elsewhere, the new attempt takes the run
over at once instead of waiting for the 120 s heartbeat timeout. The run store lives on a filesystem every
node mounts at the same path (docs/cluster.md); kdtui watches a Ray study as it watches a local one.

On CUDA, ``runs_per_gpu`` N asks ``num_gpus = 1/N`` per task: N runs packed on each GPU.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

from ..errors import KDError, RunFailed, UsageError
from ..runspec import RunSpec
from ..store import RunStore
from ..study.expand import PlannedRun

TASK_RETRIES = 3  # attempts after a node death; a run's own error is never retried


def _ray():
    try:
        import ray  # ray: an optional extra
    except ImportError:
        raise UsageError("--executor ray needs the ray extra: pip install 'kdstudy[ray]'") from None
    return ray


def train_remote(root: str, spec: dict, device: str, threads: int, loader_workers: int | None, fast: dict,
                 *teachers_done) -> dict:
    """One run, on whatever node Ray chose. The teachers' results are only there to order the tasks."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    import torch  # torch: `study run --executor` parses at start; the nodes train

    from ..training.device import setup_device  # torch, on the node
    from .executor import ensure_finished

    torch.set_num_threads(threads)  # the driver's count: CPU results repeat only at the same thread count
    spec_obj = RunSpec.from_dict(spec)
    store = RunStore(root)
    dev = setup_device(device, loader_workers, **fast)
    import ray  # ray: an optional extra

    node = ray.get_runtime_context().get_node_id()
    worker = f"ray:{socket.gethostname()}:{node[:12]}:{os.getpid()}"
    metrics = ensure_finished(store, spec_obj, dev, progress=False, worker=worker, log=lambda m: None,
                              requeue=False, dispatched=True)
    return {"run_id": spec_obj.run_id, "test_accuracy": metrics["test"]["accuracy"], "node": node}


def run_on_ray(root: Path, plan: list[PlannedRun], address: str | None, device: str = "auto",
               runs_per_gpu: int | str = 1, loader_workers: int | None = None, fast: dict | None = None,
               log: Callable[[str], None] = print) -> list[tuple[str, str]]:
    """Train every planned run on the cluster at ``address`` (None: a local one); returns the failures."""
    import torch  # torch: `study run --executor` parses at start; the nodes train

    ray = _ray()

    os.environ.setdefault("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--executor ray: cannot reach the Ray cluster at {address or 'a new local one'}: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    gpus = ray.cluster_resources().get("GPU", 0)
    on_gpu = device == "cuda" or (device == "auto" and gpus > 0)
    if device == "cuda" and not gpus:
        raise UsageError("--executor ray --device cuda: the cluster has no GPU")
    per_gpu = runs_per_gpu if isinstance(runs_per_gpu, int) else 1  # auto needs a measured peak: see docs
    options = {"num_cpus": 1, "num_gpus": 1 / per_gpu if on_gpu else 0, "max_retries": TASK_RETRIES,
               "retry_exceptions": False}
    remote = ray.remote(train_remote).options(**options)
    threads = torch.get_num_threads()
    refs: dict[str, object] = {}
    for p in plan:  # the plan lists teachers before their students
        deps = [refs[t.run_id] for t in p.spec.teachers if t.run_id in refs]
        refs[p.run_id] = remote.remote(str(root), p.spec.to_dict(), "cuda" if on_gpu else "cpu", threads,
                                       loader_workers, fast or {}, *deps)
    log(f"ray: {len(refs)} runs dispatched to {ray.cluster_resources().get('CPU', 0):.0f} CPUs and {gpus:.0f} GPUs")
    failed = []
    pending = {ref: rid for rid, ref in refs.items()}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        rid = pending.pop(done[0])
        try:
            result = ray.get(done[0])
            log(f"ray: {rid} finished on node {result['node'][:12]} (test accuracy {result['test_accuracy']:.4f})")
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), (KDError, RunFailed)) else exc
            failed.append((rid, str(cause).splitlines()[0][:300]))
            log(f"ray: {rid} failed: {failed[-1][1]}")
        except ray.exceptions.RayError as exc:  # a task that lost every node it was tried on
            failed.append((rid, f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}"))
            log(f"ray: {rid} failed: {failed[-1][1]}")
    return failed


def parse_executor(text: str) -> tuple[str, str | None]:
    """``local``, ``ray`` or ``ray=ADDRESS`` -> (kind, address)."""
    kind, _, address = text.partition("=")
    if kind not in ("local", "ray") or (kind == "local" and address):
        raise UsageError(f"--executor takes local, ray or ray=ADDRESS, got '{text}'")
    return kind, (address or None)
