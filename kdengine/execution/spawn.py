"""Starting background workers as detached processes (no torch: the TUI uses this).

A worker gets its own session (``start_new_session``), so SIGHUP from a closing
SSH session or terminal does not reach it; stdin is closed and its output goes
to a log file in the run store. Nothing is piped back to the caller.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..store import RunStore
from .packing import gpu_info, loader_workers_per_worker, plan_workers


def fast_flags(fast: dict | None) -> list[str]:
    """The worker flags that carry ``--device-input`` / ``--cuda-graph`` (or ``--no-...``: off where the defaults
    file turned them on) to a detached worker; a switch not given (None) is left to the worker's own resolution."""
    return [f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in (fast or {}).items() if v is not None]


def visible_gpus() -> list[dict]:
    """The GPUs this process may use (CUDA_VISIBLE_DEVICES, else all nvidia-smi lists), without importing torch.

    Each: {"index": ..., "memory_total_mib": ... (0 when unknown)}."""
    smi = {g["index"]: g for g in gpu_info()}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(smi.values())
    out = []
    for v in visible.split(","):
        v = v.strip()
        if not v or v == "-1":
            continue
        try:
            idx = int(v)
        except ValueError:  # a UUID: memory unknown
            out.append({"index": v, "memory_total_mib": 0})
            continue
        out.append(smi.get(idx, {"index": idx, "memory_total_mib": 0}))
    return out


def gpu_count() -> int:
    return len(visible_gpus())


def spawn_worker(runs_dir: Path, device: str = "auto", gpu: int | None = None, idle_exit: float = 30.0,
                 extra_env: dict | None = None, fast: dict | None = None, loader_workers: int | None = None) -> int:
    """Start one detached ``kdengine worker``; returns its pid."""
    store = RunStore(runs_dir)
    store.workers_dir().mkdir(parents=True, exist_ok=True)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    log = store.workers_dir() / f"worker-{stamp}-{gpu if gpu is not None else 'x'}.log"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **(extra_env or {})}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    cmd = [sys.executable, "-m", "kdengine", "worker", "--runs-dir", str(runs_dir), "--device", device,
           "--idle-exit", str(idle_exit)] + fast_flags(fast)
    if loader_workers is not None:
        cmd += ["--loader-workers", str(loader_workers)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env, cwd=os.getcwd())
    return proc.pid


def ensure_workers(runs_dir: Path, device: str = "auto", idle_exit: float = 30.0,
                   runs_per_gpu: int | str = 1, fast: dict | None = None) -> list[int]:
    """Make sure workers serve the store: ``runs_per_gpu`` per visible GPU (each pinned to its GPU; ``auto``
    fits the count to the box's cores and the queued runs' memory), or one CPU worker. Packed workers share
    the box's cores between their loader processes."""
    store = RunStore(runs_dir)
    if store.live_workers():
        return []
    gpus = visible_gpus() if device in ("auto", "cuda") else []
    if not gpus:
        return [spawn_worker(runs_dir, device, idle_exit=idle_exit)]
    plans = plan_workers(store, runs_per_gpu, gpus, fast=fast)
    total = sum(p.workers for p in plans)
    loaders = loader_workers_per_worker(total) if total > len(plans) else None
    pids = []
    for p in plans:
        pids += [spawn_worker(runs_dir, "cuda", gpu=p.index, idle_exit=idle_exit, fast=fast, loader_workers=loaders)
                 for _ in range(p.workers)]
    return pids
