"""Packing several runs onto one GPU (no torch: the TUI and ``worker --detach`` use it).

A batch-16 resnet18 student uses a fraction of a large GPU; several workers per GPU fill it. ``--runs-per-gpu
auto`` fits the count to the card's memory from measured peaks: each CUDA run records the peak memory of its
first epoch (``torch.cuda.max_memory_allocated``) per (student, teachers, batch size, image size, precision)
in ``.workers/memory.json``; ``auto`` divides the card's memory by the largest peak among the runs waiting in
the queue, keeps 10% free, and never goes above 8. Before any peak is known it starts one worker per GPU.
"""
from __future__ import annotations

import shutil
import subprocess

from .atomic import write_json
from .errors import UsageError
from .store import RunStore
from .store.runstore import read_json

MAX_PER_GPU = 8
HEADROOM = 0.9
MEMORY_FILE = "memory.json"


def memory_key(spec) -> str:
    teachers = "+".join(t.model for t in spec.teachers) or "-"
    return f"{spec.model}|{teachers}|b{spec.train.batch_size}|{spec.data.image_size}px"


def record_peak(store: RunStore, key: str, peak_bytes: int) -> None:
    """Remember the peak memory of a run shape (the largest seen wins)."""
    path = store.workers_dir() / MEMORY_FILE
    with store.lock():
        table = read_json(path) or {}
        if int(table.get(key, 0)) < peak_bytes:
            table[key] = int(peak_bytes)
            write_json(path, table)


def peaks(store: RunStore) -> dict[str, int]:
    table = read_json(store.workers_dir() / MEMORY_FILE)
    return {k: int(v) for k, v in table.items()} if isinstance(table, dict) else {}


def gpu_info() -> list[dict]:
    """Each visible GPU: index, name, memory (MiB: total, used) and utilisation (%), from nvidia-smi; [] without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index,name,memory.total,memory.used,utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_smi(out)


def parse_smi(out: str) -> list[dict]:
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_total_mib": int(float(parts[2])),
                         "memory_used_mib": int(float(parts[3])), "utilization": int(float(parts[4]))})
        except ValueError:
            continue
    return gpus


def parse_runs_per_gpu(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--runs-per-gpu takes a number in [1, {MAX_PER_GPU}] or auto, got '{text}'") from None
    if not 1 <= n <= MAX_PER_GPU:
        raise UsageError(f"--runs-per-gpu takes a number in [1, {MAX_PER_GPU}] or auto, got {n}")
    return n


def auto_runs_per_gpu(store: RunStore, memory_total_mib: int) -> tuple[int, str]:
    """How many runs fit on a card of ``memory_total_mib``, and why."""
    queued = []
    for rid in store.list_ids():
        if store.read_status(rid)["state"] not in ("queued", "running"):
            continue
        try:
            queued.append(memory_key(store.load_spec(rid)))
        except Exception:  # noqa: BLE001 - a damaged run does not decide the packing
            continue
    known = peaks(store)
    needed = [known[k] for k in queued if k in known]
    if not needed:
        return 1, "no peak measured yet for the queued runs: one per GPU until one is"
    unknown = len([k for k in queued if k not in known])
    peak = max(needed)
    n = max(1, min(MAX_PER_GPU, int(memory_total_mib * 2**20 * HEADROOM // peak)))
    why = f"largest measured peak {peak / 2**30:.1f} GiB of {memory_total_mib / 1024:.0f} GiB"
    return n, why + (f"; {unknown} queued run shape(s) not measured yet" if unknown else "")


def plan_workers(store: RunStore, runs_per_gpu: int | str, gpus: list[dict]) -> list[tuple[int, int, str]]:
    """(gpu index, workers on it, why) for each GPU."""
    plan = []
    for gpu in gpus:
        if runs_per_gpu == "auto":
            n, why = auto_runs_per_gpu(store, gpu["memory_total_mib"])
        else:
            n, why = int(runs_per_gpu), "as asked"
        plan.append((gpu["index"], n, why))
    return plan
