"""Packing several runs onto one GPU (no torch: the TUI and ``worker --detach`` use it).

A batch-16 resnet18 uses a fraction of a large GPU; several workers per GPU fill it. Two mechanisms:

- **Slots.** ``--runs-per-gpu N`` starts N workers per GPU; ``auto`` starts as many as the box's cores
  allow per GPU (at most 8), fewer when even the smallest queued run's memory would not let that many
  run at once. Their loader processes share the cores (:func:`loader_workers_per_worker`).
- **Admission.** A worker claims a run only when the run's memory need fits beside what the other runs
  on its GPU have reserved (each running CUDA run's status.json holds ``gpu`` and ``reserved_bytes``);
  the check is made under the store's lock, at the claim. A need is, best first: the peak measured for
  the run's shape (``torch.cuda.max_memory_reserved``, the allocator's whole footprint: fragmentation, the
  graphs' private pools and evaluation's larger batch included, after each epoch, in ``.workers/memory.json``),
  else an estimate from the models on the meta device (``training/memory.py``) scaled by how far the
  estimates have been off the measured peaks so far (never below 1), raised after an out-of-memory. So
  packing works from the first run, and tightens as real peaks arrive. A run that still meets CUDA
  out-of-memory beside others goes back to the queue for a less crowded slot (it never fails for
  that, though after MAX_OOM_REQUEUES such returns it waits for an empty card); one that does not fit even alone
fails, saying so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from ..atomic import write_json
from ..errors import UsageError
from ..fast_path import resolve
from ..method_catalog import DEFAULT as DEFAULT_METHOD
from ..options import EVAL_BATCH_CUDA
from ..store import RunStore
from ..store.lifecycle import QUEUED, RUNNING
from ..store.runstore import read_json

MAX_PER_GPU = 8
HEADROOM = 0.9  # of the card: kept free for fragmentation and what torch's allocator does not count
# a CUDA context with cuBLAS's and cuDNN's handles and the kernels torch loads, per process: outside the allocator,
# so in no measured peak. About 500-900 MiB on an H100 with lazy module loading; make gpu-verify measures it.
CONTEXT_BYTES = 1024 * 2**20
MEASURED_MARGIN = 1.05  # a measured peak, with a little room
OOM_GROWTH = 1.5  # after an out-of-memory, the need grows by this much
MEMORY_FILE = "memory.json"
# why a run went back to the queue for memory (its status' requeued_from): for a less crowded slot, or, after
# MAX_OOM_REQUEUES of those, to wait for an empty card (its need is then the whole card: it runs alone)
OOM, OOM_ALONE = "oom", "oom-alone"


def default_runtime(train_batch: int, fast: dict | None = None) -> dict:
    """The memory-shaping options a CUDA worker started with ``fast`` (its --device-input / --cuda-graph flags,
    None where not given) would train with, each switch resolved as setup_device resolves it (the flag, the
    environment, the defaults file), for planning without torch: the planner's key and the worker's must agree,
    or ``auto`` never sees a measured peak."""
    switches = resolve(fast)
    return {"input": "device" if switches["device_input"] else "loader", "cuda_graph": switches["cuda_graph"],
            "eval_batch": max(train_batch, EVAL_BATCH_CUDA)}


def memory_key(spec, runtime: dict | None = None, fast: dict | None = None) -> str:
    """A run shape, as far as its memory goes: the models, batch and image size, and how it runs (the input
    path: a device-resident cache; a captured graph: its private pool; the evaluation batch). ``runtime``: a
    worker's own (``DeviceSetup.memory_runtime``); else a worker's started with ``fast``."""
    teachers = "+".join(t.model for t in spec.teachers) or "-"
    rt = runtime or default_runtime(spec.train.batch_size, fast)
    # a method that reads feature maps or keeps banks holds more than Hinton's (whose keys stay as they were)
    method = f"|{spec.method}" if spec.kind == "kd" and spec.method != DEFAULT_METHOD else ""
    return (f"{spec.model}|{teachers}|b{spec.train.batch_size}|{spec.data.image_size}px|{rt['input']}"
            f"|{'graph' if rt['cuda_graph'] else 'eager'}|e{rt['eval_batch']}{method}")


# -- the memory table ------------------------------------------------------------------------------------------
def memory_table(store: RunStore) -> dict[str, dict]:
    raw = read_json(store.workers_dir() / MEMORY_FILE)
    out = {}
    for k, v in (raw or {}).items() if isinstance(raw, dict) else ():
        if isinstance(v, (int, float)):  # kdstudy 0.2 kept the peak alone
            out[k] = {"peak": int(v)}
        elif isinstance(v, dict):
            out[k] = {n: int(x) for n, x in v.items() if isinstance(x, (int, float)) and n in ("peak", "estimate", "oom")}
    return out


def _update(store: RunStore, key: str, field: str, value: int, larger: bool = True) -> None:
    path = store.workers_dir() / MEMORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.lock():
        table = memory_table(store)
        entry = table.setdefault(key, {})
        if not larger or int(entry.get(field, 0)) < value:
            entry[field] = int(value)
            write_json(path, table)


def record_peak(store: RunStore, key: str, peak_bytes: int) -> None:
    """Remember the peak memory of a run shape (the largest seen wins). A measured peak is what a run of this
    shape really used: it replaces an earlier out-of-memory's guess (which only ever said "more than
    crowded"), so one OOM never raises the shape's need for good."""
    path = store.workers_dir() / MEMORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.lock():
        table = memory_table(store)
        entry = table.setdefault(key, {})
        if int(entry.get("peak", 0)) < peak_bytes or "oom" in entry:
            entry["peak"] = max(int(entry.get("peak", 0)), int(peak_bytes))
            entry.pop("oom", None)
            write_json(path, table)


def record_estimate(store: RunStore, key: str, estimate_bytes: int) -> None:
    _update(store, key, "estimate", estimate_bytes, larger=False)


def record_oom(store: RunStore, key: str, reserved_bytes: int) -> None:
    """A run of this shape met CUDA out-of-memory with ``reserved_bytes`` of the allocator's memory reserved (its
    claim without the CUDA context, which :func:`need` adds): it needs more."""
    _update(store, key, "oom", int(reserved_bytes * OOM_GROWTH))


def peaks(store: RunStore) -> dict[str, int]:
    return {k: v["peak"] for k, v in memory_table(store).items() if "peak" in v}


def calibration(table: dict[str, dict]) -> float:
    """How far the estimates have fallen short of the measured peaks, at worst (at least 1)."""
    ratios = [v["peak"] / v["estimate"] for v in table.values() if v.get("peak") and v.get("estimate")]
    return max([1.0, *ratios])


def need(table: dict[str, dict], key: str) -> tuple[int | None, str]:
    """A shape's memory need in bytes (CUDA context included) and where it comes from; None when unknown."""
    entry = table.get(key, {})
    if entry.get("peak"):
        value, source = entry["peak"] * MEASURED_MARGIN, "measured"
    elif entry.get("estimate"):
        factor = calibration(table)
        value, source = entry["estimate"] * factor, "estimated" + (f", x{factor:.2f} from measured peaks"
                                                                   if factor > 1 else "")
    elif entry.get("oom"):
        value, source = 0, "unknown"
    else:
        return None, "unknown"
    if entry.get("oom") and entry["oom"] > value:
        value, source = entry["oom"], "raised after an out-of-memory"
    return int(value + CONTEXT_BYTES), source


# -- the ledger: what the running runs on a GPU have reserved -------------------------------------------------------
def reserved_on(store: RunStore, gpu: str) -> tuple[int, int]:
    """(bytes reserved, runs) by the running runs on ``gpu``."""
    total = count = 0
    for rid in store.list_ids():
        status = read_json(store.run_dir(rid) / "status.json")
        if isinstance(status, dict) and status.get("state") == RUNNING and status.get("gpu") == gpu:
            total += int(status.get("reserved_bytes") or 0)
            count += 1
    return total, count


def admits(store: RunStore, gpu: str, need_bytes: int, capacity_bytes: int) -> tuple[bool, str]:
    """Whether a run needing ``need_bytes`` fits on ``gpu`` now. A run alone on its GPU is always admitted
    (whether it fits at all is for the card to say)."""
    used, running = reserved_on(store, gpu)
    if running == 0:
        return True, "alone on the GPU"
    room = capacity_bytes * HEADROOM - used
    if need_bytes <= room:
        return True, f"{need_bytes / 2**30:.1f} GiB fits beside {running} run(s)"
    return False, (f"waiting for GPU memory: needs {need_bytes / 2**30:.1f} GiB, {max(0, room) / 2**30:.1f} GiB "
                   f"left beside {running} run(s)")


def mps_running() -> bool:
    """Whether an MPS control daemon serves this box (its pipe directory holds its control socket): packed
    processes then run their kernels side by side on the card; without it the card time-slices between them, and
    packing gains only what one run leaves idle (input, host work). kdstudy never starts it: how the card is
    shared is the box owner's setting (``nvidia-cuda-mps-control -d``)."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return os.path.exists(os.path.join(pipe, "control"))


# -- GPUs and slots ----------------------------------------------------------------------------------------------------
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


def slots_per_gpu(gpus: int, cpus: int | None = None) -> int:
    """Workers per GPU the box's cores allow: each worker drives its GPU from one core."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(MAX_PER_GPU, cpus // max(1, gpus)))


def loader_workers_per_worker(workers: int, cpus: int | None = None) -> int:
    """Loader processes for each of ``workers`` workers on the box, so that together they use its cores once."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, workers) - 1)


def queued_keys(store: RunStore, fast: dict | None = None) -> dict[str, list[str]]:
    """The memory key of every queued or running run (key -> run ids), as workers started with ``fast`` key it."""
    keys: dict[str, list[str]] = {}
    for rid in store.list_ids():
        if store.read_status(rid).state not in (QUEUED, RUNNING):
            continue
        try:
            keys.setdefault(memory_key(store.load_spec(rid), fast=fast), []).append(rid)
        except Exception:  # noqa: BLE001 - a damaged run does not decide the packing
            continue
    return keys


@dataclass
class GpuPlan:
    index: int | str
    name: str
    memory_total_mib: int
    workers: int
    why: str
    shapes: list[tuple[str, int | None, str, int]]  # key, need (bytes), its source, how many fit at once


def plan_workers(store: RunStore, runs_per_gpu: int | str, gpus: list[dict], cpus: int | None = None,
                 table: dict[str, dict] | None = None, fast: dict | None = None) -> list[GpuPlan]:
    """Workers per GPU, and why. ``table``: the memory table, with estimates for the queued shapes filled in
    (the worker CLI does that with torch); without one, what the store already knows. ``fast``: the fast-path
    flags the workers will be started with (their memory keys depend on them)."""
    table = memory_table(store) if table is None else table
    keys = list(queued_keys(store, fast))
    slots = slots_per_gpu(len(gpus), cpus)
    plans = []
    for gpu in gpus:
        capacity = gpu.get("memory_total_mib", 0) * 2**20
        shapes = []
        for key in keys:
            value, source = need(table, key)
            fit = max(1, int(capacity * HEADROOM // value)) if value and capacity else 0
            shapes.append((key, value, source, fit))
        if runs_per_gpu != "auto":
            n, why = int(runs_per_gpu), "as asked"
        else:
            fits = [f for _, _, _, f in shapes if f]
            most = max(fits) if fits else slots
            n = max(1, min(slots, most))
            why = f"{slots} per GPU from {cpus or os.cpu_count()} cores"
            if fits and most < slots:
                why += f"; at most {most} queued run(s) fit at once in {capacity / 2**30:.0f} GiB"
            elif not shapes:
                why += "; nothing queued yet"
            why += "; each run is admitted when its memory fits beside the others"
        if n > 1:
            why += ("; MPS is running: packed runs share the card's SMs" if mps_running() else
                    "; MPS is not running: packed runs take turns on the card (time-slicing), so packing gains what "
                    "one run leaves idle; start nvidia-cuda-mps-control -d for kernels side by side")
        plans.append(GpuPlan(gpu["index"], gpu.get("name", "?"), gpu.get("memory_total_mib", 0), n, why, shapes))
    return plans


def describe_plan(plans: list[GpuPlan]) -> str:
    lines = []
    for p in plans:
        lines.append(f"GPU {p.index} ({p.name}, {p.memory_total_mib / 1024:.0f} GiB): {p.workers} worker(s): {p.why}")
        for key, value, source, fit in p.shapes:
            size = f"{value / 2**30:.1f} GiB ({source})" if value else "unknown (measured after its first epoch)"
            lines.append(f"  {key:44} needs {size}" + (f"; {fit} fit at once" if fit else ""))
    return "\n".join(lines) if lines else "no GPU: one CPU worker"
