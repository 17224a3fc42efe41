"""``make bench-gpu``: kdstudy's own trainer, worker and study paths on one GPU, as JSON with the card and the date.

    python -m benchmarks.gpu [--device cuda|cpu] [--quick] [--out FILE] [--budget-s 480]

**Within its budget by construction**: each section runs in a child process with a hard deadline (its share of
``--budget-s``); past it the child and every worker it started are killed, and the figures it had recorded so far
(each measurement is written as it is made) are kept, marked ``"stopped": "deadline"``.

Every figure comes from kdstudy's code path (the executor, the trainer's events, ``kdengine worker``,
``kdengine study run``), each mode against the product's default in the same run:

- ``archs``: per thesis architecture at batch 16, 224 px: cross-entropy, and KD reading shared teacher
  outputs; the steady-state img/s (the last epoch's training images over its training time) and the fixed
  costs (run start to first step; the first epoch, which holds capture and cuDNN's autotuning; per epoch the
  input's start-up and the validation pass), reported apart from the steady state. Modes: the default
  (albumentations in loader processes, eager step), ``--device-input`` alone (on CUDA), and the fast path
  (``--device-input``, and on CUDA ``--cuda-graph``): each flag against the path without it.
- ``breakdown``: one epoch of resnet18 (CE and KD) with each step timed: waiting for data, host-to-device
  copy, device time, and host time to issue the step.
- ``peers``: KD resnet34 -> resnet18 at batch 16 and 32: kdstudy's trainer against timm's
  ``LogitDistillationTask`` and torchdistill's ``KDLoss``, all fed the same batches by kdstudy's input path.
- ``packing``: 1/2/4/8 runs per GPU through ``kdengine worker``: aggregate img/s against one run alone, so
  whether packed runs overlap or take turns on the card (without MPS they time-slice: near 1x); whether the
  MPS control daemon was running (it is never started here: the card's settings are left as they are).
- ``grid``: the thesis-shaped grid (32 runs per seed) on small data through ``kdengine study run --detach
  --runs-per-gpu auto``, the full grid's time per seed projected from it, and the compute limit (FLOPs
  counted with ``torch.utils.flop_counter``) as a ratio.

``--device cpu --quick`` runs the same script on tiny models, so that a machine without a GPU checks it works.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# the targets' two first (resnet18 at 3,000 img/s, seresnet101 at 800): a section stopped at its deadline has them
THESIS_ARCHS = ("resnet18", "seresnet101", "resnet34", "resnet50", "vgg11", "seresnet50")
# each section's share of --budget-s (480 s: 150 archs, 30 breakdown, 90 peers, 90 packing, 120 grid)
SHARES = {"archs": 0.3125, "breakdown": 0.0625, "peers": 0.1875, "packing": 0.1875, "grid": 0.25}
QUICK_ARCHS = ("test_resnet", "resnet10t")
PEAK_TFLOPS = 400.0  # a practical dense bf16 rate for an H100 (the figure)
# the thesis's grid per seed: MURA's balanced subset (2,201 per class for train + val, 250 per class for test)
FULL = {"epochs": 20, "train_images": 13_100, "val_images": 2_307, "test_images": 1_750}


class Setup:
    def __init__(self, device: str, quick: bool) -> None:
        self.device, self.quick = device, quick
        self.cuda = device.startswith("cuda")
        self.archs = QUICK_ARCHS if quick else THESIS_ARCHS
        self.size, self.batch = (32, 16) if quick else (224, 16)
        self.images = 420 if quick else 1400
        self.epochs = 2
        self.teacher = "resnet10t" if quick else "resnet34"
        self.primer = "test_efficientnet" if quick else "resnet10t"
        self.data = f"synthetic:images={self.images},seed=11"
        # the fast path: the input on the device, and on CUDA the graphed step; on CUDA the input alone too, so
        # that each flag is measured against the path without it
        self.modes = {"default": {}, "fast": {"device_input": True, "cuda_graph": self.cuda}}
        if self.cuda:
            self.modes = {"default": {}, "device_input": {"device_input": True}, **{"fast": self.modes["fast"]}}

    def args(self, epochs: int | None = None) -> list[str]:
        return ["--data", self.data, "--image-size", str(self.size), "--batch-size", str(self.batch), "--epochs",
                str(epochs or self.epochs), "--device", self.device, "--quiet"]


def quietly(*args: str) -> None:
    from kdengine.cli import main as cli

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli(list(args))
    if code != 0:
        raise RuntimeError(f"kdengine {' '.join(args)} exited {code}: {err.getvalue()[-1500:]}")


def fast_flags(fast: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}" for k, v in fast.items() if v]


def run_figures(store, rid: str) -> dict:
    """A run's speed and fixed costs, from its own events."""
    events = store.read_events(rid)[0]
    start = next(e for e in events if e["type"] == "start")
    epochs = [e for e in events if e["type"] == "epoch"]
    last = epochs[-1]["timing"]
    steady = last["train_s"]
    return {"run_id": rid, "images_per_s": last["images"] / max(steady, 1e-9),
            "first_epoch_images_per_s": epochs[0]["timing"]["images"] / max(epochs[0]["timing"]["train_s"], 1e-9),
            # the first epoch's time beyond a steady epoch: capture, cuDNN's autotuning, the loaders' start
            "first_epoch_extra_s": max(0.0, epochs[0]["timing"]["train_s"] - steady) if len(epochs) > 1 else None,
            "prepare_s": start["prepare_s"], "input_startup_s": [e["timing"]["first_batch_s"] for e in epochs],
            "val_s": [e["timing"]["val_s"] for e in epochs], "epoch_s": [e["epoch_s"] for e in epochs],
            "train_images": last["images"], "val_images": start["val_images"],
            "teacher_outputs": [e.get("teacher_outputs") for e in epochs]}


def bench_archs(s: Setup, root: Path, keep) -> dict:
    """Architecture by architecture (every mode of one before the next: a section stopped at its deadline has
    whole comparisons), each figure kept as it is measured."""
    from kdengine.store import RunStore

    out: dict = {m: {"flags": fast_flags(f), "runs": {}} for m, f in s.modes.items()}
    for mode, fast in s.modes.items():
        # the teacher, and a first student (not measured) that computes and stores the teacher's outputs for
        # seed 0, which every measured KD run then reads
        quietly("train", *s.args(), "--runs-dir", str(root / f"archs-{mode}"), *fast_flags(fast), "--strategy",
                "normal", "--teacher", s.teacher, "--student", s.primer, "--no-baseline")
    for arch in s.archs:
        for mode, fast in s.modes.items():
            store_dir = root / f"archs-{mode}"
            store = RunStore(store_dir)
            common = [*s.args(), "--runs-dir", str(store_dir), *fast_flags(fast)]
            quietly("train", *common, "--strategy", "baseline", "--student", arch)
            quietly("train", *common, "--strategy", "normal", "--teacher", s.teacher, "--student", arch,
                    "--no-baseline", "--seed", "0")
            ce = next(r for r in store.list_ids() if r.startswith(f"ce-{arch.replace('.', '_')}-"))
            kd = next(r for r in store.list_ids() if r.startswith(f"normal-{arch.replace('.', '_')}-"))
            out[mode]["runs"][arch] = {"ce": run_figures(store, ce), "kd_shared": run_figures(store, kd)}
        out["ratios"] = ratios(out)
        keep(out)
    return out


def ratios(out: dict) -> dict:
    """Each flag against the path without it, per architecture: device input over the default, the graph over
    device input alone (on the CPU: the fast path over the default)."""
    pairs = [("device_input", "device_input", "default"), ("cuda_graph", "fast", "device_input")] \
        if "device_input" in out else [("fast", "fast", "default")]
    res: dict = {}
    for flag, on, off in pairs:
        for arch, f in out[on]["runs"].items():
            d = out[off]["runs"].get(arch)
            if d and "ce" in d and "ce" in f:
                res.setdefault(flag, {})[arch] = {k: f[k]["images_per_s"] / d[k]["images_per_s"]
                                                  for k in ("ce", "kd_shared")}
    return res


def bench_breakdown(s: Setup, root: Path) -> dict:
    """One epoch of the first architecture, CE and KD, each step timed (synchronising after each one, which
    the product never does: these are the parts, not the speed)."""
    import torch

    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs, ce_spec
    from kdengine.store import RunStore
    from kdengine.training.device import setup_device
    from kdengine.execution.executor import ensure_finished
    from kdengine.training.trainer import TrainState, Trainer

    out = {}
    for mode, fast in s.modes.items():
        dev = setup_device(s.device, **fast)
        store = RunStore(root / f"breakdown-{mode}")
        data = DataConfig(source=s.data, image_size=s.size)
        train = TrainConfig(epochs=1, batch_size=s.batch)
        teacher = ce_spec(s.teacher, data, train, 1)
        ensure_finished(store, teacher, dev, progress=False, log=lambda m: None)
        for what, spec in (("ce", ce_spec(s.archs[0], data, train, 1)),
                           ("kd", build_specs("normal", s.archs[0], [s.teacher], data, train, KDConfig(), 1))):
            store.create(spec)
            trainer = Trainer(store, spec, dev, progress=False, log=lambda m: None)
            trainer.prepare()
            trainer.state = TrainState()
            trainer._timing = {"t0": time.time(), "steps": 0}
            trainer._read_lr()
            for hook in trainer.hooks:
                hook.on_epoch_start(trainer, 1)
            sync = torch.cuda.synchronize if dev.is_cuda else (lambda: None)
            parts = {"data_wait_s": 0.0, "h2d_s": 0.0, "device_s": 0.0, "host_s": 0.0}
            batches, steps = trainer.feed.epoch(1), 0
            t_prev = time.perf_counter()
            for raw in batches:
                sync()
                t_data = time.perf_counter()
                parts["data_wait_s"] += t_data - t_prev
                if dev.is_cuda and "x" in raw:  # what the copy of this batch costs on its own
                    pinned = raw["x"].cpu().pin_memory()
                    sync()
                    t0 = time.perf_counter()
                    pinned.to(dev.device, non_blocking=True)
                    sync()
                    parts["h2d_s"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                trainer.run_step(raw)
                t_issued = time.perf_counter()
                sync()
                t_done = time.perf_counter()
                parts["host_s"] += t_issued - t0
                parts["device_s"] += t_done - t0
                steps += 1
                t_prev = time.perf_counter()
            trainer.feed.close()
            total = sum(parts.values())
            out.setdefault(mode, {})[what] = {"model": s.archs[0], "steps": steps, **parts,
                                              "shares": {k: v / total for k, v in parts.items()},
                                              "ms_per_step": {k: 1000 * v / max(1, steps) for k, v in parts.items()}}
    return out


def bench_peers(s: Setup, batch: int, fast: dict) -> dict:
    """KD resnet34 -> resnet18 (quick: resnet10t -> test_resnet): kdstudy's trainer, epoch for epoch, against
    timm's and torchdistill's loops fed the same batches by kdstudy's input path."""
    from benchmarks import kd

    # (timm renormalises inputs between models whose pretrained configs differ: a pair that shares one)
    student, teacher = ("resnet10t", "resnet18") if s.quick else ("resnet18", "resnet34")
    old = (kd.STUDENT, kd.TEACHER)
    kd.STUDENT, kd.TEACHER = student, teacher
    try:
        return kd.bench_peers(s.device, images=s.images * (1 if s.quick else 2), size=s.size, batch=batch,
                              repeats=2, fast=fast)
    finally:
        kd.STUDENT, kd.TEACHER = old


def _wait_finished(store, ids: list[str], timeout: float, progress=None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        states = [store.read_status(r).state for r in ids]
        if progress is not None:
            progress(sum(st == "finished" for st in states))
        if all(st in ("finished", "failed", "stopped") for st in states):
            return
        time.sleep(0.5)
    raise RuntimeError(f"runs not finished after {timeout:.0f}s: {states}")


def _aggregate(store, ids: list[str]) -> dict:
    """Training images per second over the wall time from the first claim to the last finish."""
    first, last, images = float("inf"), 0.0, 0
    for rid in ids:
        for e in store.read_events(rid)[0]:
            if e["type"] == "lifecycle" and e.get("state") == "running":
                first = min(first, e["t"])
            if e["type"] == "lifecycle" and e.get("state") == "finished":
                last = max(last, e["t"])
            if e["type"] == "epoch":
                images += e["timing"]["images"]
    wall = last - first
    return {"runs": len(ids), "wall_s": wall, "train_images": images, "images_per_s": images / max(wall, 1e-9)}


def bench_packing(s: Setup, root: Path, fast: dict, keep) -> dict:
    """N runs per GPU through ``kdengine worker`` (each worker a detached process, as the TUI starts them)."""
    from kdengine.execution.spawn import ensure_workers, spawn_worker
    from kdengine.execution.packing import mps_running
    from kdengine.store import RunStore

    counts = (1, 2) if s.quick else (1, 2, 4, 8)
    runs = 4 if s.quick else 8
    out = {}
    result = {"student": s.archs[0], "batch": s.batch, "image_size": s.size, "mps": mps_running() if s.cuda else None,
              "runs_per_gpu": out}
    for n in counts:
        store_dir = root / f"packing-{n}"
        for seed in range(runs):
            quietly("train", *s.args(epochs=1), "--runs-dir", str(store_dir), "--strategy", "baseline",
                    "--student", s.archs[0], "--seed", str(seed), "--queue")
        store = RunStore(store_dir)
        ids = store.list_ids()
        if s.cuda:
            ensure_workers(store_dir, "cuda", idle_exit=3.0, runs_per_gpu=n, fast=fast)
        else:  # no GPU: N plain workers share the cores (what the script can check without a card)
            threads = str(max(1, (os.cpu_count() or 1) // n))
            for _ in range(n):
                spawn_worker(store_dir, "cpu", idle_exit=3.0, fast=fast, extra_env={"OMP_NUM_THREADS": threads})
        _wait_finished(store, ids, timeout=3600)
        out[str(n)] = _aggregate(store, ids)
        base = out.get("1", {}).get("images_per_s")
        for r in out.values():
            if base and "images_per_s" in r:
                # N runs' throughput against one alone: near 1x, they took turns; toward N, they overlapped
                r["vs_one"] = r["images_per_s"] / base
        keep(result)
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
        model = timm.create_model(arch, num_classes=7, in_chans=1)
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 1, size, size, device="meta"))
    return float(counter.get_total_flops())


def bench_grid(s: Setup, root: Path, fast: dict, keep) -> dict:
    """The thesis's grid shape (32 runs per seed) on small data with the fast path and auto packing, two epochs
    a run; the full grid per seed projected from each run's steady-state (last) epoch, with its fixed costs
    (start-up, the first epoch's capture and autotuning) added once per run, and the concurrency packing reached."""
    from kdengine.store import RunStore

    if s.quick:
        big, small = ["resnet10t"], ["test_resnet"]
    else:
        big, small = ["seresnet50", "seresnet101"], ["vgg11", "resnet18", "resnet34", "resnet50"]
    study = root / "grid.toml"
    study.write_text(GRID.format(teachers=json.dumps(big + small), data=s.data, size=s.size, epochs=2,
                                 batch=s.batch, big=json.dumps(big), small=json.dumps(small)))
    store_dir = root / "grid"
    t0 = time.time()
    quietly("study", "run", str(study), "--runs-dir", str(store_dir), "--device", s.device, "--detach",
            "--runs-per-gpu", "auto" if s.cuda else "1", *fast_flags(fast))
    store = RunStore(store_dir)
    ids = store.list_ids()
    _wait_finished(store, ids, timeout=3600,
                   progress=lambda done: keep({"runs": len(ids), "finished_so_far": done, "wall_s": time.time() - t0}))
    wall = time.time() - t0
    per_run, busy = [], 0.0
    flops = {a: flops_per_image(a, 224) for a in big + small} if not s.quick else {}
    full_compute = 0.0
    for rid in ids:
        f = run_figures(store, rid)
        spec = store.load_spec(rid)
        events = store.read_events(rid)[0]
        running = [e["t"] for e in events if e["type"] == "lifecycle" and e.get("state") == "running"]
        finished = [e["t"] for e in events if e["type"] == "lifecycle" and e.get("state") == "finished"]
        duration = (finished[-1] - running[0]) if running and finished else 0.0
        busy += duration
        rate = f["images_per_s"]
        val_rate = f["val_images"] / max(f["val_s"][-1], 1e-9)
        epochs = 1 if spec.defect_acc is not None else FULL["epochs"]  # a defective teacher stops early
        fixed = f["prepare_s"] + (f["first_epoch_extra_s"] or 0.0)  # once per run, never per epoch
        projected = (fixed + epochs * (FULL["train_images"] / rate + f["input_startup_s"][-1]
                                       + FULL["val_images"] / val_rate)
                     + (FULL["train_images"] + FULL["val_images"] + FULL["test_images"]) / val_rate)
        per_run.append({"run_id": rid, "duration_s": duration, "images_per_s": rate, "projected_s": projected})
        if flops:
            student = flops[spec.model]
            teacher = sum(flops[t.model] for t in spec.teachers)
            full_compute += epochs * FULL["train_images"] * (3 * student + teacher)
            full_compute += (epochs * FULL["val_images"]
                             + FULL["train_images"] + FULL["val_images"] + FULL["test_images"]) * student
    concurrency = busy / max(wall, 1e-9)
    projected_s = sum(r["projected_s"] for r in per_run) / max(concurrency, 1.0)
    out = {"runs": len(ids), "wall_s": wall, "concurrency": concurrency, "per_run": per_run,
           "projected_full_grid_minutes_per_seed": projected_s / 60, "full_grid": FULL,
           "what": "each run's prepare, per-epoch and per-image costs measured here, scaled to the full data "
                   "and 20 epochs, summed, divided by the concurrency packing reached"}
    if flops:
        out["compute_minutes_at_peak"] = full_compute / (PEAK_TFLOPS * 1e12) / 60
        out["projected_over_compute"] = projected_s / (full_compute / (PEAK_TFLOPS * 1e12))
        out["peak_tflops_assumed"] = PEAK_TFLOPS
    return out


def machine(device: str) -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "device": device, "date": time.strftime("%Y-%m-%d")}
    if device.startswith("cuda") and torch.cuda.is_available():
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


def run_section(name: str, s: Setup, root: Path, keep) -> dict:
    fast = s.modes["fast"]
    if name == "archs":
        return bench_archs(s, root, keep)
    if name == "breakdown":
        return bench_breakdown(s, root)
    if name == "peers":
        out: dict = {}
        for b in (16, 32):
            for m, f in s.modes.items():
                out.setdefault(f"batch{b}", {})[m] = bench_peers(s, b, f)
                keep(out)
        return out
    if name == "packing":
        return bench_packing(s, root, fast, keep)
    if name == "grid":
        return bench_grid(s, root, fast, keep)
    raise SystemExit(f"unknown section {name}")


def _kill_workers(root: Path) -> None:
    """Every kdengine worker a stopped section started (detached, in their own sessions), found by the section's
    folder in their command line, registered or not yet."""
    import signal

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


def section_in_child(name: str, argv: list[str], root: Path, limit_s: float) -> dict:
    """One section in a child process, stopped hard at ``limit_s``; its figures so far are kept either way."""
    import signal
    import subprocess

    partial = Partial(root / f"{name}.partial.json")
    cmd = [sys.executable, "-m", "benchmarks.gpu", *argv, "--child", name, "--root", str(root),
           "--partial", str(partial.path)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        _, err = proc.communicate(timeout=max(1.0, limit_s))
        stopped = None
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        stopped = f"deadline: stopped after {limit_s:.0f} s, figures so far kept"
    _kill_workers(root)
    got = partial.read()
    out = got.get("result") if "result" in got else {**got.get("so_far", {})}
    out = dict(out or {})
    out["seconds"] = time.time() - t0
    if stopped:
        out["stopped"] = stopped
    elif proc.returncode != 0:
        out["error"] = (got.get("error") or (err or b"").decode(errors="replace")[-1500:]
                        or f"exited {proc.returncode}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.gpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny models and data (a check that the script works)")
    p.add_argument("--out", default=None, help="write the results as JSON")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="the whole benchmark's wall time: each section is stopped at its share of it")
    p.add_argument("--sections", default="archs,breakdown,peers,packing,grid")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one section, in a child process
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--partial", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    s = Setup(device, args.quick)
    if args.child:  # the child: one section, every figure written as it comes
        partial = Partial(Path(args.partial))
        os.environ.setdefault("KDSTUDY_DATA", str(Path(args.root) / "data"))
        try:
            result = run_section(args.child, s, Path(args.root), lambda so_far: partial({"so_far": so_far}))
        except Exception as exc:  # noqa: BLE001 - the parent keeps what was measured, and this
            partial({**partial.read(), "error": f"{exc.__class__.__name__}: {str(exc)[:1500]}"})
            return 1
        partial({"result": result})
        return 0
    sections = args.sections.split(",")
    share = sum(SHARES.get(n, 0.1) for n in sections)
    t_start = time.time()
    results: dict = {"machine": machine(device), "quick": args.quick, "budget_s": args.budget_s, "sections": {}}
    child_argv = ["--device", device, *(["--quick"] if args.quick else [])]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in sections:
            left = args.budget_s - (time.time() - t_start)
            limit = min(left, args.budget_s * SHARES.get(name, 0.1) / share)
            if limit < 5:
                results["sections"][name] = {"skipped": "out of time"}
                continue
            results["sections"][name] = section_in_child(name, child_argv, root, limit)
            print(f"{name}: {results['sections'][name]['seconds']:.0f}s", file=sys.stderr, flush=True)
    results["seconds"] = time.time() - t_start
    text = json.dumps(results, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(summary(results))
    return 0 if not any("error" in v for v in results["sections"].values()) else 1


def summary(results: dict) -> str:
    """The headline figures, one line each."""
    lines = [f"{results['machine'].get('gpu') or 'CPU'} ({results['machine']['date']})"]
    sec = results["sections"]
    for mode, block in sec.get("archs", {}).items():
        if isinstance(block, dict) and "runs" in block:
            rates = ", ".join(f"{a} {r['ce']['images_per_s']:.0f}/{r['kd_shared']['images_per_s']:.0f}"
                              for a, r in block["runs"].items() if "ce" in r)
            lines.append(f"archs {mode} (img/s CE/KD-shared): {rates}")
    for key, block in sec.get("peers", {}).items():
        if isinstance(block, dict) and "fast" in block:
            for mode, r in block.items():
                if isinstance(r, dict) and "timm" in r:
                    lines.append(f"peers {key} {mode}: {r['timm']['ratio']:.2f}x timm, "
                                 f"{r['torchdistill']['ratio']:.2f}x torchdistill")
    pk = sec.get("packing", {}).get("runs_per_gpu", {})
    if pk:
        lines.append("packing: " + ", ".join(f"{n}: {r['images_per_s']:.0f} img/s ({r.get('vs_one', 1):.2f}x one)"
                                             for n, r in pk.items() if "images_per_s" in r)
                     + f"; MPS {'running' if sec['packing'].get('mps') else 'not running'}")
    grid = sec.get("grid", {})
    if "projected_full_grid_minutes_per_seed" in grid:
        lines.append(f"grid: {grid['runs']} runs in {grid['wall_s']:.0f}s (concurrency {grid['concurrency']:.1f}); "
                     f"full grid projected {grid['projected_full_grid_minutes_per_seed']:.0f} min per seed"
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
