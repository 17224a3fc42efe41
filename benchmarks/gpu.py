"""``make bench-gpu``: kdstudy's own trainer, worker and study paths on one GPU, as JSON with the card and the date.

    python -m benchmarks.gpu [--device cuda|cpu] [--quick] [--out FILE] [--budget-s 375] [--sections ...]

**Within its budget by construction**: each section runs in a child process with a hard deadline (its share of
``--budget-s``, SHARES); past it the child and every worker it started are killed, and the figures it had recorded
so far (each measurement is written as it is made) are kept, marked ``"stopped": "deadline"``. On the CPU (no CUDA
in the parent) a child is forked, with torch already imported; with CUDA a fresh interpreter, since CUDA forbids
forking a process that touched it.

Every figure comes from kdstudy's code path (the executor and the trainer, ``kdengine worker``, ``kdengine study
run``), each mode against the path without its flag in the same run, every mode's flags given explicitly (the
defaults file, ``kdengine/fast_path.json``, never decides what a mode measures). The modes: ``default`` (no flag),
``device_input`` (``--device-input``) and ``fast`` (``--device-input --cuda-graph``; on the CPU the graph is a
no-op and ``fast`` runs as ``device_input`` does, so that the rehearsal yields every field).

- ``archs`` (most of the budget): per thesis architecture at batch 16, 224 px (resnet18 and seresnet101 first,
  the targets' two), cross-entropy and KD from one random-weight teacher checkpoint (resnet34; a finished run made
  without training it, teacher outputs computed in each step, not shared), EPOCHS epochs a run, no figures drawn.
  Only **steady epochs** are timed: never the first (autotuning, loader start), never one in which a graph was
  captured (the epoch events count the captures, so the partial batch's capture in epoch 2 is left out too); at
  least three a mode. Each flag against the path without it, per architecture and kind: the ratio of steady rates
  with its 95 % interval (``speedup.py``); the rule reads the interval's lower bound.
- ``breakdown``: one steady epoch of the first architecture (CE and KD) per mode, the product's own loop with a
  sync around each part: waiting for the input's source (loader processes, the host-gather thread), the feed's
  own copies to the device (the time its generator takes beyond that wait), the step's host time to issue it and
  its device time, and the loop's remaining host work.
- ``peers``: KD resnet34 -> resnet18 at batch 16 and 32: kdstudy's trainer against timm's
  ``LogitDistillationTask`` and torchdistill's ``KDLoss``, all fed the same batches by kdstudy's input path.
- ``packing``: 1/2/4/8 runs per GPU through ``kdengine worker`` (the fast path), each run 4 epochs: the aggregate
  training rate while every run is in its steady epochs at once (the window where they overlap), against one run
  alone: start-up, capture and evaluation, which 1-epoch runs mostly measured, are left out. Without the MPS
  control daemon the card time-slices between processes, and packing gains what one run leaves idle: the project's
  earlier H100 run (``../shared/device/h100-2026-11-26/packing.json``, the hand-written loop of ``kd.bench_packing``,
  resnet18 at batch 16, 224 px) measured 3.17x one run with 4 processes and 3.44x with 8, without MPS. Whether the
  daemon ran is recorded (it is never started here: the card's settings are left as they are).
- ``grid``: the thesis-shaped grid (32 runs per seed) on small data through ``kdengine study run --detach
  --runs-per-gpu auto``, the full grid's time per seed projected as runs finish (an unfinished run from a finished
  one of its shape, else its student; a lower bound while some shape has none), and the compute limit: the grid's
  FLOPs (``torch.utils.flop_counter``, on the CPU too) at the dense matmul rate measured on this device in this run.

``--device cpu --quick`` runs the same script on tiny models and data (``make gpu-verify-dry``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# the targets' two first (resnet18 at 3,000 img/s, seresnet101 at 800): a section stopped at its deadline has them
THESIS_ARCHS = ("resnet18", "seresnet101", "resnet34", "resnet50", "vgg11", "seresnet50")
QUICK_ARCHS = ("test_resnet", "test_efficientnet")
# each section's share of --budget-s; make gpu-verify gives the benchmark about 375 s: archs 225 (two
# architectures at least, each 6 runs of 5 epochs with their checkpoints), the rest 150
SHARES = {"archs": 0.60, "breakdown": 0.05, "peers": 0.10, "packing": 0.12, "grid": 0.13}
SECTIONS = tuple(SHARES)
EPOCHS = 5  # a graphed run captures in epochs 1 and 2 (the partial batch): epochs 3-5 are steady, three at least
MIN_STEADY = 3
MODES = {"default": {"device_input": False, "cuda_graph": False},
         "device_input": {"device_input": True, "cuda_graph": False},
         "fast": {"device_input": True, "cuda_graph": True}}
PAIRS = (("device_input", "device_input", "default"), ("cuda_graph", "fast", "device_input"))  # flag, on, off
# the thesis's grid per seed: MURA's balanced subset (2,201 per class for train + val, 250 per class for test)
FULL = {"epochs": 20, "train_images": 13_100, "val_images": 2_307, "test_images": 1_750}
FULL_SIZE = 224  # the thesis's image size: the compute limit is the full grid's


class Setup:
    def __init__(self, device: str, quick: bool) -> None:
        self.device, self.quick = device, quick
        self.cuda = device.startswith("cuda")
        self.archs = QUICK_ARCHS if quick else THESIS_ARCHS
        self.size, self.batch = (32, 16) if quick else (224, 16)
        self.images = 90 if quick else 1400
        self.epochs = EPOCHS if self.cuda else MIN_STEADY + 1  # no capture on the CPU: epochs 2 on are steady
        self.teacher = "test_convnext" if quick else "resnet34"
        self.data = f"synthetic:images={self.images},seed=11"
        self.modes = MODES

    def args(self, epochs: int | None = None) -> list[str]:
        return ["--data", self.data, "--image-size", str(self.size), "--batch-size", str(self.batch), "--epochs",
                str(epochs or self.epochs), "--device", self.device, "--quiet"]

    def configs(self, epochs: int | None = None):
        from kdengine.data.config import DataConfig
        from kdengine.runspec import TrainConfig

        return DataConfig(source=self.data, image_size=self.size), TrainConfig(epochs=epochs or self.epochs,
                                                                              batch_size=self.batch)

    def spec(self, kind: str, arch: str, epochs: int | None = None):
        """A measured run: cross-entropy, or KD from the random-weight teacher (``teacher_spec``)."""
        from kdengine.runspec import KDConfig, build_specs, ce_spec

        data, train = self.configs(epochs)
        if kind == "ce":
            return ce_spec(arch, data, train, 0)
        return build_specs("normal", arch, [self.teacher_spec()], data, train, KDConfig(), 0)

    def teacher_spec(self):
        from kdengine.runspec import ce_spec

        data, train = self.configs(1)
        return ce_spec(self.teacher, data, train, 0)


def quietly(*args: str) -> None:
    from kdengine.cli import main as cli

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli(list(args))
    if code != 0:
        raise RuntimeError(f"kdengine {' '.join(args)} exited {code}: {err.getvalue()[-1500:]}")


def fast_flags(fast: dict) -> list[str]:
    """Every switch given explicitly, on or off (the modes name both: the defaults file never decides them)."""
    from kdengine.execution.spawn import fast_flags as flags

    return flags(fast)


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def run_figures(store, rid: str) -> dict:
    """A run's steady rates and fixed costs, from its own events. Steady: an epoch after the first in which no graph
    was captured (``timing.captures`` counts them so far)."""
    events = store.read_events(rid)[0]
    start = next(e for e in events if e["type"] == "start")
    epochs = [e for e in events if e["type"] == "epoch"]
    timing = [e["timing"] for e in epochs]
    rates = [t["images"] / max(t["train_s"], 1e-9) for t in timing]
    captures = [t.get("captures", 0) for t in timing]
    steady = [i for i in range(1, len(epochs)) if captures[i] == captures[i - 1]]
    steady_train = sorted(timing[i]["train_s"] for i in steady)
    return {"run_id": rid, "images_per_s": geomean([rates[i] for i in steady]),
            "steady_epochs": [epochs[i]["epoch"] for i in steady], "steady_rates": [rates[i] for i in steady],
            "epoch_rates": rates, "captures": captures,
            # the first epoch's time beyond a steady epoch: cuDNN's autotuning, the loaders' start, the first capture
            "first_epoch_extra_s": (max(0.0, timing[0]["train_s"] - steady_train[len(steady_train) // 2])
                                    if steady_train else None),
            "prepare_s": start["prepare_s"], "input_startup_s": [t["first_batch_s"] for t in timing],
            "val_s": [t["val_s"] for t in timing], "epoch_s": [e["epoch_s"] for e in epochs],
            "train_images": timing[-1]["images"] if timing else 0, "val_images": start["val_images"],
            "runtime": (start.get("trained_on") or {}), "teacher_outputs": [e.get("teacher_outputs") for e in epochs]}


def ratios(runs: dict) -> dict:
    """Each flag against the path without it, per architecture and kind: the ratio of steady rates and its
    interval (``speedup.ratio_interval``)."""
    from benchmarks.speedup import ratio_interval

    res: dict = {}
    for flag, on, off in PAIRS:
        for arch, kinds in runs.items():
            for kind, modes in kinds.items():
                if on in modes and off in modes:
                    cell = ratio_interval(modes[on]["steady_rates"], modes[off]["steady_rates"])
                    res.setdefault(flag, {}).setdefault(arch, {})[kind] = cell
    return res


def bench_archs(s: Setup, root: Path, keep) -> dict:
    """Architecture by architecture (every kind and mode of one before the next: a section stopped at its deadline
    has whole comparisons), each figure kept as it is measured."""
    from benchmarks.kd import random_teacher
    from kdengine.execution.executor import ensure_finished
    from kdengine.store import RunStore
    from kdengine.training.device import setup_device

    os.environ["KDSTUDY_NO_LOGIT_SHARING"] = "1"  # every KD step computes its teacher's outputs
    out: dict = {"modes": {m: fast_flags(f) for m, f in s.modes.items()}, "epochs": s.epochs, "batch": s.batch,
                 "image_size": s.size, "teacher": s.teacher, "teacher_weights": "random", "runs": {}, "ratios": {}}
    devs = {m: setup_device(s.device, **f) for m, f in s.modes.items()}
    for arch in s.archs:
        for kind in ("ce", "kd"):
            for mode, dev in devs.items():
                store = RunStore(root / f"archs-{mode}")
                spec = s.spec(kind, arch)
                if kind == "kd":
                    random_teacher(store, spec.teachers[0])
                ensure_finished(store, spec, dev, progress=False, log=lambda m: None)
                out["runs"].setdefault(arch, {}).setdefault(kind, {})[mode] = run_figures(store, spec.run_id)
        out["ratios"] = ratios(out["runs"])
        keep(out)
    return out


class _TimedSource:
    """A batch source (the loader, the host-gather thread's queue) whose waits are summed: what ``take()`` returns
    is the time spent waiting for it since the last call."""

    def __init__(self, inner) -> None:
        self.inner, self.waited = inner, 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __iter__(self):
        return self._timed(iter(self.inner))  # the inner iterator starts now (a loader draws its seed then)

    def _timed(self, it):
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - t0
            yield item

    def take(self) -> float:
        w, self.waited = self.waited, 0.0
        return w


def _timed_parts(trainer, sync, parts: dict):
    """The trainer's feed and step, timed in place: the loop that runs them is the product's own."""
    from kdengine.training import inputs

    feed, sources = trainer.feed, []
    if hasattr(feed, "loader"):
        feed.loader = _TimedSource(feed.loader)
        sources.append(feed.loader)
    real_gather = inputs.HostGather

    class TimedGather(real_gather):  # the device-input path over its budget: the thread's queue is the source
        def __iter__(self):
            src = _TimedSource(real_gather.__iter__(self))
            sources.append(src)
            return iter(src)

    inputs.HostGather = TimedGather
    real_epoch, real_step = feed.epoch, trainer.run_step

    def epoch(e):
        it = real_epoch(e)
        while True:
            sync()
            t0 = time.perf_counter()
            try:
                raw = next(it)
            except StopIteration:
                return
            sync()
            spent, waited = time.perf_counter() - t0, sum(src.take() for src in sources)
            parts["data_wait_s"] += waited
            parts["h2d_s"] += max(0.0, spent - waited)
            yield raw

    def step(raw):
        t0 = time.perf_counter()
        out = real_step(raw)
        t1 = time.perf_counter()
        sync()
        parts["host_s"] += t1 - t0
        parts["device_s"] += time.perf_counter() - t0
        parts["steps"] += 1
        return out

    feed.epoch, trainer.run_step = epoch, step
    return lambda: setattr(inputs, "HostGather", real_gather)


def bench_breakdown(s: Setup, root: Path, keep) -> dict:
    """Epochs 1-2 untimed (autotuning, loader start, both captures), epoch 3 timed in parts."""
    import torch

    from benchmarks.kd import random_teacher
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import TrainState, Trainer

    os.environ["KDSTUDY_NO_LOGIT_SHARING"] = "1"
    out: dict = {"model": s.archs[0], "epoch": 3, "what": "the product's loop, synchronised around each part"}
    for mode, fast in s.modes.items():
        dev = setup_device(s.device, **fast)
        sync = torch.cuda.synchronize if dev.is_cuda else (lambda: None)
        store = RunStore(root / f"breakdown-{mode}")
        for what in ("ce", "kd"):
            spec = s.spec(what, s.archs[0], epochs=3)
            if what == "kd":
                random_teacher(store, spec.teachers[0])
            enqueue(store, spec)
            store.claim(spec.run_id, "bench")
            trainer = Trainer(store, spec, dev, progress=False, log=lambda m: None)
            trainer.prepare()
            trainer.state = state = TrainState()
            trainer._timing = {"t0": time.time(), "steps": 0}
            for epoch in (1, 2):
                trainer.train_epoch(epoch, state)
            parts = {"data_wait_s": 0.0, "h2d_s": 0.0, "host_s": 0.0, "device_s": 0.0, "steps": 0}
            undo = _timed_parts(trainer, sync, parts)
            try:
                sync()
                t0 = time.perf_counter()
                trainer.train_epoch(3, state)
                sync()
                wall = time.perf_counter() - t0
            finally:
                undo()
                trainer.feed.close()
            steps = parts.pop("steps")
            # the issuing host time is part of the step's device time: the parts of the epoch are these four
            timed = {k: parts[k] for k in ("data_wait_s", "h2d_s", "device_s")}
            parts["loop_other_s"] = timed["loop_other_s"] = max(0.0, wall - sum(timed.values()))
            out.setdefault(mode, {})[what] = {
                "steps": steps, "epoch_s": wall, **parts, "shares": {k: v / wall for k, v in timed.items()},
                "ms_per_step": {k: 1000 * v / max(1, steps) for k, v in parts.items()},
                "runtime": dev.runtime()}
            keep(out)
    return out


def bench_peers(s: Setup, root: Path, keep) -> dict:
    """KD resnet34 -> resnet18 (quick: test_convnext -> test_resnet; timm renormalises inputs between models whose
    pretrained configs differ: pairs that share one), kdstudy's trainer against timm's and torchdistill's loops,
    the target's figure (batch 16, the fast path) first; batch 32 too on a GPU."""
    from benchmarks import kd

    student, teacher = ("test_resnet", "test_convnext") if s.quick else ("resnet18", "resnet34")
    kd.STUDENT, kd.TEACHER = student, teacher
    out: dict = {}
    runs = ((16, "fast"), (16, "default")) + (() if s.quick else ((32, "fast"), (32, "default")))
    for batch, mode in runs:
        out.setdefault(f"batch{batch}", {})[mode] = kd.bench_peers(
            s.device, images=s.images * (1 if s.quick else 2), size=s.size, batch=batch, repeats=2,
            fast=s.modes[mode])
        keep(out)
    return out


def _wait_finished(store, ids: list[str], timeout: float, progress=None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        states = [store.read_status(r).state for r in ids]
        if progress is not None:
            progress(states)
        if all(st in ("finished", "failed", "stopped") for st in states):
            return
        time.sleep(0.5)
    raise RuntimeError(f"runs not finished after {timeout:.0f}s: {states}")


def _train_intervals(store, rid: str) -> list[tuple[float, float, int, int]]:
    """(start, end, images, epoch) of each epoch's training, from its event (the event's time is the epoch's end,
    validation included: training ran from end - epoch_s for train_s)."""
    out = []
    for e in store.read_events(rid)[0]:
        if e["type"] == "epoch" and e.get("epoch_s") is not None:
            begin = e["t"] - e["epoch_s"]
            out.append((begin, begin + e["timing"]["train_s"], e["timing"]["images"], e["epoch"]))
    return out


def steady_overlap(store, ids: list[str]) -> dict:
    """The runs' aggregate training rate while all were in their steady epochs (each run's epochs from the second
    on) at once: each run's rate over its epochs that lie inside the window where every run was steady, summed."""
    spans = {rid: [iv for iv in _train_intervals(store, rid) if iv[3] >= 2] for rid in ids}
    if not all(spans.values()):
        return {"runs": len(ids), "overlap": None, "why": "a run has no steady epoch"}
    lo = max(sp[0][0] for sp in spans.values())
    hi = min(sp[-1][1] for sp in spans.values())
    rates = []
    for sp in spans.values():
        inside = [iv for iv in sp if iv[0] >= lo - 1e-3 and iv[1] <= hi + 1e-3]
        if not inside:
            return {"runs": len(ids), "overlap": None, "window_s": max(0.0, hi - lo),
                    "why": "the runs' steady epochs did not overlap"}
        rates.append(sum(iv[2] for iv in inside) / max(1e-9, sum(iv[1] - iv[0] for iv in inside)))
    return {"runs": len(ids), "window_s": hi - lo, "images_per_s": sum(rates), "per_run": rates, "overlap": True}


def _wait_workers(store, n: int, timeout: float = 300.0) -> None:
    """Until ``n`` workers serve the store (each has set its device up and advertises itself)."""
    end = time.time() + timeout
    while len(store.live_workers()) < n:
        if time.time() > end:
            raise RuntimeError(f"{len(store.live_workers())} of {n} workers started in {timeout:.0f} s")
        time.sleep(0.2)


def bench_packing(s: Setup, root: Path, keep) -> dict:
    """N runs per GPU through ``kdengine worker`` (detached processes, as the TUI starts them): the most workers
    any count needs are started once, and for each count N that many runs (4 epochs each on a GPU) are queued at
    once, once every worker is up, so that they start together and their steady epochs overlap (the idle workers wait on
    the queue, holding no more than their CUDA context); the steady overlap against one run alone."""
    from kdengine.execution.packing import mps_running
    from kdengine.execution.spawn import ensure_workers, spawn_worker
    from kdengine.store import RunStore

    fast = s.modes["fast"]
    counts = (1, 2) if s.quick else (1, 2, 4, 8)
    # a worker looks at the queue every second: runs must outlast that skew by far (tiny runs on the CPU: more
    # epochs; at 8 a tenth of a second each, two runs' steady epochs failed to overlap in one rehearsal of two)
    epochs = 24 if s.quick else 4
    out: dict = {}
    result = {"student": s.archs[0], "batch": s.batch, "image_size": s.size, "epochs": epochs,
              "flags": fast_flags(fast), "mps": mps_running() if s.cuda else None, "workers": max(counts),
              "runs_per_gpu": out}
    store_dir = root / "packing"
    store = RunStore(store_dir)
    if s.cuda:
        ensure_workers(store_dir, "cuda", idle_exit=600.0, runs_per_gpu=max(counts), fast=fast)
    else:  # no GPU: plain workers share the cores (what the script can check without a card)
        threads = "1" if s.quick else str(max(1, (os.cpu_count() or 1) // max(counts)))
        for _ in range(max(counts)):
            spawn_worker(store_dir, "cpu", idle_exit=600.0, fast=fast, extra_env={"OMP_NUM_THREADS": threads})
    _wait_workers(store, max(counts))
    seed = 0
    for n in counts:
        before = set(store.list_ids())
        for seed in range(seed, seed + n):
            quietly("train", *s.args(epochs=epochs), "--runs-dir", str(store_dir), "--strategy", "baseline",
                    "--student", s.archs[0], "--seed", str(seed), "--queue")
        seed += 1
        ids = sorted(set(store.list_ids()) - before)
        _wait_finished(store, ids, timeout=3600)
        out[str(n)] = steady_overlap(store, ids)
        base = (out.get("1") or {}).get("images_per_s")
        for r in out.values():
            if base and r.get("images_per_s"):
                # 1x: packing gained nothing; N: as if each run had the card to itself
                r["vs_one"] = r["images_per_s"] / base
        keep(result)
    _kill_workers(store_dir)
    return result


GRID = """name = "bench-grid"
seeds = [0]
teachers = {teachers}
[data]
source = "{data}"
image_size = {size}
[train]
epochs = {epochs}
batch_size = {batch}
lr = 0.0001
optimizer = "adam"
[kd]
alpha = 0.9
temperature = 4.0
defect_acc = 0.5
[[experiments]]
strategy = "normal"
teachers = {big}
students = {small}
[[experiments]]
strategy = "reverse"
teachers = {small}
students = {big}
[[experiments]]
strategy = "defective"
teachers = {big}
students = {small}
"""


def flops_per_image(arch: str, size: int) -> float:
    """Forward FLOPs of one image (1 channel), counted on the meta device."""
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = timm.create_model(arch, num_classes=7, in_chans=1).eval()  # one image: BatchNorm in eval mode
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 1, size, size, device="meta"))
    return float(counter.get_total_flops())


def matmul_tflops(device: str, seconds: float = 0.5) -> dict:
    """This device's dense matmul rate, measured here: bf16 on CUDA (the precision training runs at), fp32 on the
    CPU. The compute limit is the grid's FLOPs at this rate."""
    import torch

    cuda = device.startswith("cuda")
    n, dtype = (8192, torch.bfloat16) if cuda else (512, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        sync()
    rate = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
    del a, b
    if cuda:
        torch.cuda.empty_cache()  # the grid's workers share this card
    return {"tflops": rate, "dtype": str(dtype).removeprefix("torch."), "n": n}


def _grid_projection(store, ids: list[str], flops: dict, peak_tflops: float, started: float) -> dict:
    """The full grid's time per seed, projected from the runs finished so far (see the module's note)."""
    per_run, busy, missing, full_compute = {}, 0.0, [], 0.0
    now = time.time()
    for rid in ids:
        events = store.read_events(rid)[0]
        running = [e["t"] for e in events if e["type"] == "lifecycle" and e.get("state") == "running"]
        finished = [e["t"] for e in events if e["type"] == "lifecycle" and e.get("state") == "finished"]
        if running:
            busy += (finished[-1] if finished else now) - running[0]
        spec = store.load_spec(rid)
        shape = (spec.model, tuple(t.model for t in spec.teachers))
        epochs = 1 if spec.defect_acc is not None else FULL["epochs"]  # a defective teacher stops early
        student = flops.get(spec.model, 0.0)
        teacher = sum(flops.get(t.model, 0.0) for t in spec.teachers)
        full_compute += epochs * FULL["train_images"] * (3 * student + teacher)
        full_compute += (epochs * FULL["val_images"] + sum(FULL[k] for k in ("train_images", "val_images",
                                                                              "test_images"))) * student
        if not finished:
            per_run[rid] = {"shape": shape, "epochs": epochs, "finished": False}
            continue
        f = run_figures(store, rid)
        rate = geomean(f["steady_rates"] or f["epoch_rates"][-1:])  # a defective run may stop after one epoch
        val_rate = f["val_images"] / max(f["val_s"][-1], 1e-9)
        parts = {"fixed_s": f["prepare_s"] + (f["first_epoch_extra_s"] or 0.0),  # once per run, never per epoch
                 "epoch_s": FULL["train_images"] / rate + f["input_startup_s"][-1] + FULL["val_images"] / val_rate,
                 "final_s": (FULL["train_images"] + FULL["val_images"] + FULL["test_images"]) / val_rate}
        per_run[rid] = {"shape": shape, "epochs": epochs, "finished": True, "images_per_s": rate,
                        "steady": bool(f["steady_rates"]), **parts}
    done = [r for r in per_run.values() if r["finished"]]
    for rid, r in per_run.items():
        if not r["finished"]:  # from the finished runs of its shape, else of its student, per part
            like = [d for d in done if d["shape"] == r["shape"]] or [d for d in done if d["shape"][0] == r["shape"][0]]
            if not like:
                missing.append(rid)
                continue
            for k in ("fixed_s", "epoch_s", "final_s"):
                r[k] = sum(d[k] for d in like) / len(like)
            r["estimated_from"] = "its shape" if like[0]["shape"] == r["shape"] else "its student"
        r["projected_s"] = r["fixed_s"] + r["epochs"] * r["epoch_s"] + r["final_s"]
    wall = max(1e-9, now - started)
    concurrency = busy / wall
    known = sum(r.get("projected_s", 0.0) for r in per_run.values()) / max(concurrency, 1.0)
    out = {"runs": len(ids), "finished": len(done), "wall_s": wall, "concurrency": concurrency,
           "full_grid": FULL, "per_run": per_run,
           "what": "each run's prepare, per-epoch and per-image costs measured here (an unfinished run's from a "
                   "finished one of its shape, else its student), scaled to the full data and 20 epochs, summed, "
                   "divided by the concurrency packing reached"}
    if missing:
        out["projected_minutes_lower_bound"] = known / 60
        out["unprojected_runs"] = missing
    else:
        out["projected_full_grid_minutes_per_seed"] = known / 60
    if full_compute:
        compute_s = full_compute / (peak_tflops * 1e12)
        out["compute_minutes_at_peak"] = compute_s / 60
        out["projected_over_compute"] = known / compute_s
        out["grid_tflop"] = full_compute / 1e12
    return out


def bench_grid(s: Setup, root: Path, keep) -> dict:
    """The thesis's grid shape (32 runs per seed) on small data with the fast path and auto packing, three epochs a
    run (a graphed run captures the partial batch in its second: its third is the steady one), projected as runs
    finish."""
    from kdengine.store import RunStore

    if s.quick:
        big, small = ["test_resnet"], ["test_efficientnet"]
    else:
        big, small = ["seresnet50", "seresnet101"], ["vgg11", "resnet18", "resnet34", "resnet50"]
    peak = matmul_tflops(s.device)
    flops = {a: flops_per_image(a, FULL_SIZE if not s.quick else s.size) for a in big + small}
    study = root / "grid.toml"
    study.write_text(GRID.format(teachers=json.dumps(big + small), data=s.data, size=s.size, epochs=3,
                                 batch=s.batch, big=json.dumps(big), small=json.dumps(small)))
    store_dir = root / "grid"
    t0 = time.time()
    quietly("study", "run", str(study), "--runs-dir", str(store_dir), "--device", s.device, "--detach",
            "--runs-per-gpu", "auto" if s.cuda else "1", *fast_flags(s.modes["fast"]))
    store = RunStore(store_dir)
    ids = store.list_ids()
    state = {"done": -1}

    def progress(states) -> None:
        done = sum(st == "finished" for st in states)
        if done != state["done"]:
            state["done"] = done
            keep({"peak": peak, **_grid_projection(store, ids, flops, peak["tflops"], t0)})

    _wait_finished(store, ids, timeout=3600, progress=progress)
    return {"peak": peak, **_grid_projection(store, ids, flops, peak["tflops"], t0)}


def machine(device: str) -> dict:
    """The machine, the card by nvidia-smi (asking torch would give this process, which runs nothing, a CUDA
    context: half a GiB of the card held for the whole call)."""
    import torch

    from kdengine.execution.spawn import visible_gpus

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "device": device,
            "date": time.strftime("%Y-%m-%d")}
    if device.startswith("cuda"):
        gpus = visible_gpus()
        if gpus and gpus[0].get("name"):
            info["gpu"], info["gpu_memory_gib"] = gpus[0]["name"], gpus[0].get("memory_total_mib", 0) / 1024
        elif torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


class Partial:
    """A section's figures so far, rewritten (atomically) each time one is measured: what survives a deadline."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __call__(self, figures: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures, default=str))
        os.replace(tmp, self.path)

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}


SECTION_FUNCS = {"archs": bench_archs, "breakdown": bench_breakdown, "peers": bench_peers, "packing": bench_packing,
                 "grid": bench_grid}


def run_section(name: str, s: Setup, root: Path, partial: Partial) -> int:
    """One section, every figure written as it comes; the exit status."""
    os.environ.setdefault("KDSTUDY_DATA", str(root / "data"))
    os.environ["KDSTUDY_RUN_FIGURES"] = "0"  # figures are no part of what is measured
    if s.quick and not s.cuda:  # the rehearsal on a shared CPU: one thread a process (workers inherit it), else
        import torch            # the processes' thread pools oversubscribe the cores (10x slower, measured)

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        result = SECTION_FUNCS[name](s, root, lambda so_far: partial({"so_far": so_far}))
    except Exception as exc:  # noqa: BLE001 - the parent keeps what was measured, and this
        partial({**partial.read(), "error": f"{exc.__class__.__name__}: {str(exc)[:1500]}"})
        return 1
    partial({"result": result})
    return 0


def _kill_workers(root: Path) -> None:
    """Every kdengine worker a stopped section started (detached, in their own sessions), found by the section's
    folder in their command line, registered or not yet."""
    for proc in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmd and any(str(root).encode() in part for part in cmd):
            with contextlib.suppress(OSError):
                os.killpg(int(proc.name), signal.SIGKILL)


def start_child(fork_fn, cmd: list[str], fork: bool, output: Path | None = None):
    """A child process in a session of its own (killed whole at its deadline): ``fork_fn()`` (its exit status) in a
    fork of this process where this process never touched CUDA (torch is imported already: seconds saved per
    section), else ``cmd`` in a fresh interpreter (CUDA forbids forking a process that touched it). Its output
    goes to ``output`` (else nowhere)."""
    if fork:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.setsid()
                with open(output or os.devnull, "w") as out, contextlib.redirect_stdout(out), \
                        contextlib.redirect_stderr(out):
                    code = fork_fn()
            finally:
                os._exit(code)
        return pid
    import subprocess

    out = open(output, "w") if output else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parent.parent)
    finally:
        if output:
            out.close()


def wait_child(child, limit_s: float) -> tuple[int | None, bool]:
    """(exit status, stopped at the deadline): past ``limit_s`` the child's whole session is killed."""
    end = time.time() + max(1.0, limit_s)
    while time.time() < end:
        if isinstance(child, int):
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status), False
        elif child.poll() is not None:
            return child.returncode, False
        time.sleep(0.05)
    pid = child if isinstance(child, int) else child.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if isinstance(child, int):
        os.waitpid(child, 0)
    else:
        child.wait()
    return None, True


def section_in_child(name: str, s: Setup, root: Path, limit_s: float, fork: bool) -> dict:
    """One section in a child process, stopped hard at ``limit_s``; its figures so far are kept either way."""
    partial = Partial(root / f"{name}.partial.json")
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--device", s.device, *(["--quick"] if s.quick else []),
           "--child", name, "--root", str(root), "--partial", str(partial.path)]
    t0 = time.time()
    child = start_child(lambda: run_section(name, s, root, partial), cmd, fork)
    code, stopped = wait_child(child, limit_s)
    _kill_workers(root)
    got = partial.read()
    out = dict(got.get("result") if "result" in got else got.get("so_far") or {})
    out["seconds"] = time.time() - t0
    out["limit_s"] = limit_s
    if stopped:
        out["stopped"] = f"deadline: stopped after {limit_s:.0f} s, figures so far kept"
    elif code != 0:
        out["error"] = got.get("error") or f"exited {code}"
    return out


def can_fork(device: str) -> bool:
    """Sections (and make gpu-verify's tests) are forked only on the CPU, from a process that never touched CUDA."""
    import torch

    return not device.startswith("cuda") and not torch.cuda.is_initialized() and hasattr(os, "fork")


def run(device: str, quick: bool, budget_s: float, sections: list[str], log=None) -> dict:
    """Every section in turn, each in its share of ``budget_s``; the results (also what make gpu-verify keeps)."""
    s = Setup(device, quick)
    fork = can_fork(device)
    share = sum(SHARES[n] for n in sections)
    t_start = time.time()
    results: dict = {"machine": machine(device), "quick": quick, "budget_s": budget_s, "shares": SHARES,
                     "sections": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in sections:
            left = budget_s - (time.time() - t_start)
            limit = min(left, budget_s * SHARES[name] / share)
            if limit < 1:
                results["sections"][name] = {"skipped": "out of time", "limit_s": max(0.0, limit)}
                continue
            results["sections"][name] = section_in_child(name, s, root, limit, fork)
            if log:
                log(f"{name}: {results['sections'][name]['seconds']:.0f} s of {limit:.0f}")
    results["seconds"] = time.time() - t_start
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.gpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny models and data (a check that the script works)")
    p.add_argument("--out", default=None, help="write the results as JSON")
    p.add_argument("--budget-s", type=float, default=375.0,
                   help="the whole benchmark's wall time: each section is stopped at its share of it")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one section, in a fresh interpreter
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--partial", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.child:
        return run_section(args.child, Setup(device, args.quick), Path(args.root), Partial(Path(args.partial)))
    sections = args.sections.split(",")
    unknown = [n for n in sections if n not in SHARES]
    if unknown:
        print(f"benchmarks.gpu: unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)})",
              file=sys.stderr)
        return 2
    results = run(device, args.quick, args.budget_s, sections, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(summary(results))
    return 0 if not any("error" in v for v in results["sections"].values()) else 1


def summary(results: dict) -> str:
    """The headline figures, one line each."""
    lines = [f"{results['machine'].get('gpu') or 'CPU'} ({results['machine']['date']})"]
    sec = results["sections"]
    archs = sec.get("archs", {})
    for arch, kinds in (archs.get("runs") or {}).items():
        rates = "; ".join(f"{kind} " + ", ".join(f"{m} {r['images_per_s']:.0f}" for m, r in modes.items()
                                                  if r.get("images_per_s"))
                          for kind, modes in kinds.items())
        lines.append(f"archs {arch} (steady img/s): {rates}")
    for flag, per_arch in (archs.get("ratios") or {}).items():
        cells = ", ".join(f"{a} {k} {c['ratio']:.2f}x [{c['low'] or float('nan'):.2f}, {c['high'] or float('nan'):.2f}]"
                          for a, kinds in per_arch.items() for k, c in kinds.items() if c.get("ratio"))
        lines.append(f"{flag}: {cells}")
    for key, block in (sec.get("peers") or {}).items():
        for mode, r in (block.items() if isinstance(block, dict) else ()):
            if isinstance(r, dict) and "timm" in r:
                lines.append(f"peers {key} {mode}: {r['timm']['ratio']:.2f}x timm, "
                             f"{r['torchdistill']['ratio']:.2f}x torchdistill")
    pk = (sec.get("packing") or {}).get("runs_per_gpu") or {}
    if pk:
        lines.append("packing (steady overlap): " + ", ".join(
            f"{n}: {r['images_per_s']:.0f} img/s ({r.get('vs_one', 1):.2f}x one)" for n, r in pk.items()
            if r.get("images_per_s")) + f"; MPS {'running' if sec['packing'].get('mps') else 'not running'}")
    grid = sec.get("grid") or {}
    minutes = grid.get("projected_full_grid_minutes_per_seed")
    if minutes is not None or "projected_minutes_lower_bound" in grid:
        what = (f"{minutes:.0f} min per seed" if minutes is not None
                else f"at least {grid['projected_minutes_lower_bound']:.0f} min per seed")
        lines.append(f"grid: {grid['finished']} of {grid['runs']} runs in {grid['wall_s']:.0f} s (concurrency "
                     f"{grid['concurrency']:.1f}); full grid projected {what}"
                     + (f", {grid['projected_over_compute']:.1f}x the compute limit"
                        if "projected_over_compute" in grid else ""))
    for name, block in sec.items():
        if isinstance(block, dict) and "error" in block:
            lines.append(f"{name}: ERROR {block['error'][:300]}")
        if isinstance(block, dict) and "stopped" in block:
            lines.append(f"{name}: {block['stopped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
