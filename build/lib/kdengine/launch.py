"""Starting background workers as detached processes (no torch: the TUI uses this).

A worker gets its own session (``start_new_session``), so SIGHUP from a closing
SSH session or terminal does not reach it; stdin is closed and its output goes
to a log file in the run store. Nothing is piped back to the caller.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .store import RunStore


def gpu_count() -> int:
    """GPUs visible to this process, without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def spawn_worker(runs_dir: Path, device: str = "auto", gpu: int | None = None, idle_exit: float = 30.0,
                 extra_env: dict | None = None) -> int:
    """Start one detached ``kdengine worker``; returns its pid."""
    store = RunStore(runs_dir)
    store.workers_dir().mkdir(parents=True, exist_ok=True)
    log = store.workers_dir() / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{gpu if gpu is not None else 'x'}.log"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **(extra_env or {})}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    cmd = [sys.executable, "-m", "kdengine", "worker", "--runs-dir", str(runs_dir), "--device", device,
           "--idle-exit", str(idle_exit)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env, cwd=os.getcwd())
    return proc.pid


def ensure_workers(runs_dir: Path, device: str = "auto", idle_exit: float = 30.0) -> list[int]:
    """Make sure workers are running for the store: one per GPU when there are several, else one."""
    store = RunStore(runs_dir)
    if store.live_workers():
        return []
    n = gpu_count() if device in ("auto", "cuda") else 0
    if n > 1:
        return [spawn_worker(runs_dir, "cuda", gpu=i, idle_exit=idle_exit) for i in range(n)]
    return [spawn_worker(runs_dir, device, idle_exit=idle_exit)]
