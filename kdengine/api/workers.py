"""Workers: starting detached workers, a worker in this process, what --runs-per-gpu would start, and what the
workers and the GPUs are doing now.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..execution.packing import GpuPlan, gpu_info, memory_table, parse_runs_per_gpu, plan_workers, queued_keys
from ..execution.spawn import ensure_workers, gpu_count, visible_gpus
from ..runspec import RunSpec
from ..store import RunStore
from ..store.worker_logs import worker_log_tails
from .runs import Queued, queue


def start_workers(store: RunStore, device: str = "auto", runs_per_gpu: int | str = 1,
                  fast: dict | None = None, idle_exit: float = 30.0) -> list[int]:
    """Make sure detached workers serve the store; the pids started (none when one is already running)."""
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    return ensure_workers(store.root, device, idle_exit, runs_per_gpu=runs_per_gpu, fast=fast)


def work_here(store: RunStore, device: str = "auto", idle_exit: float = 30.0, once: bool = False,
              loader_workers: int | None = None, fast: dict | None = None) -> int:
    """Be a worker in this process: train queued runs until the queue has been empty for ``idle_exit`` seconds
    (or at once, with ``once``); the exit status."""
    from ..execution.worker import Worker  # torch: this process trains

    return Worker(store, device, idle_exit, once, loader_workers, fast=fast).run()


@dataclass
class Launched:
    queued: Queued
    pids: list[int] = field(default_factory=list)  # workers started (none: one was running, or none was asked for)


def launch(store: RunStore, spec: RunSpec, device: str = "auto", with_baseline: bool = True,
           runs_per_gpu: int | str = 1, fast: dict | None = None, workers: bool = True) -> Launched:
    """Queue a run (and its baseline) and make sure a worker will train it."""
    queued = queue(store, spec, with_baseline, device)
    return Launched(queued, start_workers(store, device, runs_per_gpu, fast) if workers else [])


@dataclass
class WorkerPlan:
    device: str
    gpus: list[GpuPlan] = field(default_factory=list)  # per visible GPU: its workers, why, each queued shape's need

    @property
    def gpu_visible(self) -> bool:
        return bool(self.gpus)


def worker_plan(store: RunStore, device: str = "auto", runs_per_gpu: int | str = "auto") -> WorkerPlan:
    """What ``--runs-per-gpu`` would start (each GPU, its workers and why, each queued shape's memory need),
    measured or estimated now on the meta device; nothing is started or written."""
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    gpus = visible_gpus() if device in ("auto", "cuda") else []
    if not gpus:
        return WorkerPlan(device)
    table = memory_table(store)
    from ..training.memory import estimate_peak  # torch, on the meta device: only for the plan

    for key, ids in queued_keys(store).items():
        if not table.get(key, {}).get("peak") and not table.get(key, {}).get("estimate"):
            table[key] = {**table.get(key, {}), "estimate": estimate_peak(store.load_spec(ids[0]))}
    return WorkerPlan(device, plan_workers(store, runs_per_gpu, gpus, table=table))


def live_workers(store: RunStore) -> list[dict]:
    """The workers serving the store now: pid, host, device, GPU, current run, heartbeat."""
    return store.live_workers()


def worker_logs(store: RunStore, count: int = 3, lines: int = 6) -> list[tuple[str, list[str]]]:
    """(log name, its last lines) of the newest worker logs."""
    return worker_log_tails(store, count, lines)


def gpus() -> list[dict]:
    """Each visible GPU (nvidia-smi, no torch): index, name, memory (MiB: total, used), utilisation (%)."""
    return gpu_info()


def count_gpus() -> int:
    """How many GPUs this machine shows (nvidia-smi)."""
    return gpu_count()
