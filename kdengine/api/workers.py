"""Workers: starting detached workers, and what --runs-per-gpu would start.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from ..execution.spawn import ensure_workers, visible_gpus
from ..execution.packing import describe_plan, memory_table, parse_runs_per_gpu, plan_workers, queued_keys
from ..runspec import RunSpec
from ..store import RunStore
from .runs import Queued, queue


def start_workers(store: RunStore, device: str = "auto", runs_per_gpu: int | str = 1,
                  fast: dict | None = None, idle_exit: float = 30.0) -> list[int]:
    """Make sure detached workers serve the store; the pids started (none when one is already running)."""
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    return ensure_workers(store.root, device, idle_exit, runs_per_gpu=runs_per_gpu, fast=fast)


def serve(store: RunStore, device: str = "auto", idle_exit: float = 30.0, once: bool = False,
          loader_workers: int | None = None, fast: dict | None = None) -> int:
    """Train queued runs in this process until the queue has been empty for ``idle_exit`` seconds (or at once,
    with ``once``); the exit status."""
    from ..execution.worker import Worker  # torch: this process trains

    return Worker(store, device, idle_exit, once, loader_workers, fast=fast).run()


def launch(store: RunStore, spec: RunSpec, device: str = "auto", with_baseline: bool = True,
           runs_per_gpu: int | str = 1, fast: dict | None = None, workers: bool = True) -> tuple[Queued, list[int]]:
    """Queue a run (and its baseline) and make sure a worker will train it."""
    queued = queue(store, spec, with_baseline, device)
    return queued, (start_workers(store, device, runs_per_gpu, fast) if workers else [])


def worker_plan(store: RunStore, device: str = "auto", runs_per_gpu: int | str = "auto") -> str:
    """What ``--runs-per-gpu`` would start (each GPU, its workers and why, each queued shape's memory need),
    measured or estimated now on the meta device; nothing is started or written."""
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    gpus = visible_gpus() if device in ("auto", "cuda") else []
    if not gpus:
        return ("no GPU visible (nvidia-smi): one CPU worker" if device != "cuda" else
                "no GPU visible (nvidia-smi): a CUDA worker would have nothing to run on")
    table = memory_table(store)
    from ..training.memory import estimate_peak  # torch, on the meta device: only for the plan

    for key, ids in queued_keys(store).items():
        if not table.get(key, {}).get("peak") and not table.get(key, {}).get("estimate"):
            table[key] = {**table.get(key, {}), "estimate": estimate_peak(store.load_spec(ids[0]))}
    return describe_plan(plan_workers(store, runs_per_gpu, gpus, table=table))
