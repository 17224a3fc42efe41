"""Distillation benchmarks, each a ratio against a reference measured in the same run:

- ``peers``: images/s of one KD epoch (data loading included) for kdstudy's trainer, timm's
  ``LogitDistillationTask`` and torchdistill 1.1.5's ``KDLoss``, on the same models, data, batches and
  optimiser. All three read the same decoded, augmented batches (kdstudy's loader), so the ratio measures
  the training loops, not a data pipeline kdstudy has and the peers would have to build.
- ``sharing``: the wall time of a one-teacher, three-student grid with shared teacher outputs and without,
  and whether the students' best weights are identical.
- ``packing`` and ``gpu`` (CUDA only): concurrent runs per GPU, and one run's throughput with and without
  ``torch.compile``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDENT, TEACHER = "resnet18", "resnet34"


def _data(images: int, size: int, batch: int):
    from kdengine.data.cache import build_or_load
    from kdengine.data.config import DataConfig, open_source
    from kdengine.data.loader import CachedImages

    source = open_source(DataConfig(source=f"synthetic:images={images},seed=5"))
    cache = build_or_load(source, size)
    return source, CachedImages(cache, "train", train=True, seed=0)


def _epoch_loop(dev, train_ds, batch, step, epoch=1) -> tuple[float, int]:
    """Wall time of one epoch: batches from kdstudy's loader through ``step(x, y)``."""
    import torch

    from kdengine.data.loader import make_loader

    n = 0
    t0 = time.perf_counter()
    for x, y, _ in make_loader(train_ds, batch, epoch=epoch, shuffle=True, workers=dev.loader_workers,
                               pin_memory=dev.pin_memory):
        step(x.to(dev.device, non_blocking=True), y.to(dev.device, non_blocking=True))
        n += len(y)
    if dev.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, n


def _models(dev, classes: int):
    import timm
    import torch

    torch.manual_seed(0)
    student = timm.create_model(STUDENT, num_classes=classes, in_chans=1).to(dev.device)
    teacher = timm.create_model(TEACHER, num_classes=classes, in_chans=1).to(dev.device).eval()
    if dev.channels_last:
        student = student.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def bench_peers(device: str = "cpu", images: int = 700, size: int = 64, batch: int = 32, repeats: int = 2,
                alpha: float = 0.9, temperature: float = 4.0) -> dict:
    import torch

    from kdengine.data.loader import Normalizer
    from kdengine.training.device import setup_device

    dev = setup_device(device)
    source, train_ds = _data(images, size, batch)
    classes = len(source.class_names)
    norm = Normalizer(1, dev.channels_last).to(dev.device)
    results = {}

    # -- kdstudy: its own trainer, one epoch -----------------------------------------------------------------
    def kdstudy_epoch() -> tuple[float, int]:
        from kdengine.data.config import DataConfig
        from kdengine.runspec import KDConfig, TrainConfig, build_specs
        from kdengine.store import RunStore
        from kdengine.training.checkpoints import save_best
        from kdengine.training.trainer import TrainState, Trainer

        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(tmp)
            spec = build_specs("normal", STUDENT, [TEACHER], DataConfig(source="synthetic:images=%d,seed=5" % images,
                                                                        image_size=size),
                               TrainConfig(epochs=1, batch_size=batch), KDConfig(alpha=alpha, temperature=temperature), 0)
            _, teacher = _models(dev, classes)
            store.create(spec.teacher)
            save_best(store.checkpoint_dir(spec.teacher.run_id), teacher.float().cpu(),
                      {"arch": TEACHER, "in_chans": 1, "num_classes": classes})
            store.finish(spec.teacher.run_id, "finished")
            store.create(spec)
            trainer = Trainer(store, spec, dev, progress=False, log=lambda m: None)
            trainer.prepare()
            trainer._timing = {"t0": time.time(), "steps": 0}
            t0 = time.perf_counter()
            trainer.train_epoch(1, TrainState())
            if dev.is_cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t0, len(trainer.train_ds)

    # -- timm: LogitDistillationTask -----------------------------------------------------------------------
    def timm_epoch() -> tuple[float, int]:
        from timm.task.distillation import LogitDistillationTask

        student, teacher = _models(dev, classes)
        task = LogitDistillationTask(student, teacher, criterion=torch.nn.CrossEntropyLoss(),
                                     distill_loss_weight=alpha, task_loss_weight=1 - alpha,
                                     temperature=temperature, device=dev.device, verbose=False).train()
        opt = torch.optim.Adam(student.parameters(), 1e-3)

        def step(x, y):
            with dev.autocast():
                out = task(norm(x), y)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()

        return _epoch_loop(dev, train_ds, batch, step)

    # -- torchdistill 1.1.5: KDLoss (alpha on the cross-entropy: alpha_td = 1 - alpha) ---------------------
    def torchdistill_epoch() -> tuple[float, int]:
        from torchdistill.losses.mid_level import KDLoss

        student, teacher = _models(dev, classes)
        loss_fn = KDLoss("fc", "output", "fc", "output", temperature=temperature, alpha=1 - alpha,
                         reduction="batchmean")
        opt = torch.optim.Adam(student.parameters(), 1e-3)
        student.train()

        def step(x, y):
            with dev.autocast():
                xs = norm(x)
                with torch.no_grad():
                    t = teacher(xs)
                s = student(xs)
            loss = loss_fn({"fc": {"output": s.float()}}, {"fc": {"output": t.float()}}, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return _epoch_loop(dev, train_ds, batch, step)

    os.environ["KDSTUDY_NO_LOGIT_SHARING"] = "1"  # one student: nothing to share
    frameworks = {"kdstudy": kdstudy_epoch, "timm": timm_epoch, "torchdistill": torchdistill_epoch}
    times: dict[str, list[float]] = {name: [] for name in frameworks}
    try:
        timm_epoch()  # warm-up, untimed: the first epoch in a process pays for kernel selection and allocation
        for _ in range(repeats):  # interleaved, so that no framework always runs first or last
            for name, fn in frameworks.items():
                times[name].append(fn()[0])
        for name in frameworks:
            best = min(times[name])
            results[name] = {"epoch_s": best, "images_per_s": len(train_ds) / best, "all_epoch_s": times[name]}
    finally:
        os.environ.pop("KDSTUDY_NO_LOGIT_SHARING", None)
    out = {"student": STUDENT, "teacher": TEACHER, "image_size": size, "batch": batch, "train_images": len(train_ds),
           "kdstudy": results["kdstudy"]}
    for peer in ("timm", "torchdistill"):
        out[peer] = {**results[peer], "ratio": results["kdstudy"]["images_per_s"] / results[peer]["images_per_s"]}
    return out


def bench_sharing(device: str = "cpu", images: int = 700, size: int = 64, epochs: int = 2) -> dict:
    """One teacher, three students, with shared teacher outputs and without; fresh stores for both."""
    from safetensors.torch import load_file

    from kdengine.cli import main
    from kdengine.store import RunStore

    students = ["resnet10t", "test_resnet", "test_efficientnet"]
    common = ["--data", f"synthetic:images={images},seed=5", "--image-size", str(size), "--epochs", str(epochs),
              "--device", device, "--quiet", "--no-baseline", "--strategy", "normal", "--teacher", STUDENT]
    times, stores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("without", "with"):
            root = Path(tmp) / mode
            if mode == "without":
                os.environ["KDSTUDY_NO_LOGIT_SHARING"] = "1"
            try:
                t0 = time.perf_counter()
                for s in students:
                    assert main(["train", *common, "--student", s, "--runs-dir", str(root)]) == 0
                times[mode] = time.perf_counter() - t0
            finally:
                os.environ.pop("KDSTUDY_NO_LOGIT_SHARING", None)
            stores[mode] = RunStore(root)
        identical = True
        for rid in stores["with"].list_ids():
            a = load_file(stores["with"].checkpoint_dir(rid) / "best.safetensors")
            b = load_file(stores["without"].checkpoint_dir(rid) / "best.safetensors")
            identical &= all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
        shared = sum(e.get("teacher_outputs") == "shared" for rid in stores["with"].list_ids()
                     for e in stores["with"].read_events(rid)[0] if e["type"] == "epoch")
    return {"teacher": STUDENT, "students": students, "epochs": epochs, "image_size": size,
            "without_s": times["without"], "with_s": times["with"], "speedup": times["without"] / times["with"],
            "identical": identical, "student_epochs_reading_shared_outputs": shared}


GPU_WORKER = r"""
import sys, time, torch, timm
from kdengine.data.loader import Normalizer
from kdengine.runspec import KDConfig
from kdengine.training.device import setup_device
from kdengine.training.strategies import Hinton
from kdengine.training.teacher import FrozenTeacher
batch, size, seconds, compile_ = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
dev = setup_device("cuda", compile=compile_)
student = timm.create_model("resnet18", num_classes=7, in_chans=1).to(dev.device, memory_format=torch.channels_last)
teacher = FrozenTeacher(timm.create_model("seresnet50", num_classes=7, in_chans=1), Normalizer(1, True)).to(dev.device)
teacher = teacher.to(memory_format=torch.channels_last)
norm = Normalizer(1, True).to(dev.device)
fwd = torch.compile(student, mode="reduce-overhead" if batch <= 32 else None) if compile_ else student
opt = torch.optim.Adam(student.parameters(), 1e-3)
loss_fn = Hinton(KDConfig(), 7)
x = torch.randint(0, 255, (batch, 1, size, size), dtype=torch.uint8, device=dev.device)
y = torch.randint(0, 7, (batch,), device=dev.device)
def step():
    with dev.autocast():
        t = [teacher(x)]
        s = fwd(norm(x))
    loss = sum(loss_fn.terms(s, y, t).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(20):
    step()
torch.cuda.synchronize()
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    step()
    n += batch
torch.cuda.synchronize()
print(n / (time.perf_counter() - t0), torch.cuda.max_memory_allocated())
"""


def _gpu_throughput(processes: int, batch: int, size: int, seconds: float, compile_: bool) -> dict:
    """Images/s summed over ``processes`` concurrent KD trainings on GPU 0 (resnet18 <- seresnet50)."""
    procs = [subprocess.Popen([sys.executable, "-c", GPU_WORKER, str(batch), str(size), str(seconds),
                               "1" if compile_ else "0"], stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    outs = [p.communicate(timeout=1800)[0].split() for p in procs]
    rates = [float(o[0]) for o in outs]
    return {"processes": processes, "images_per_s": sum(rates), "per_process": rates,
            "peak_memory_gib": max(float(o[1]) for o in outs) / 2**30}


def bench_packing(seconds: float = 30.0) -> dict:
    runs = {n: _gpu_throughput(n, 16, 224, seconds, False) for n in (1, 2, 4, 8)}
    base = runs[1]["images_per_s"]
    return {"batch": 16, "image_size": 224, "student": "resnet18", "teacher": "seresnet50",
            "runs": {str(n): {**r, "vs_one": r["images_per_s"] / base} for n, r in runs.items()},
            "four_vs_one": runs[4]["images_per_s"] / base}


def bench_gpu(seconds: float = 30.0) -> dict:
    eager = _gpu_throughput(1, 64, 224, seconds, False)
    compiled = _gpu_throughput(1, 64, 224, seconds, True)
    return {"batch": 64, "image_size": 224, "precision": "bf16", "channels_last": True,
            "eager_images_per_s": eager["images_per_s"], "compiled_images_per_s": compiled["images_per_s"],
            "compile_speedup": compiled["images_per_s"] / eager["images_per_s"]}
