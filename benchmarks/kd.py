"""Distillation benchmarks, each a ratio against a reference measured in the same run:

- ``peers``: images/s of one KD epoch for kdstudy's trainer, timm's ``LogitDistillationTask`` and
  torchdistill 1.1.5's ``KDLoss``, on the same models, data, batches and optimiser settings. All three read
  the same batches from kdstudy's input path (the loader, or with ``fast`` the device-resident input), so
  the ratio measures the training loops, not a data pipeline kdstudy has and the peers would have to build.
- ``sharing``: the wall time of a one-teacher, three-student grid with shared teacher outputs and without,
  and whether the students' best weights are identical.
- ``memos``: the wall time of a study (the demo's normal-KD trio on one seed, then its shift evaluation with an
  external site) with the process memos (``data/memo.py``: training views, the generated set, shifted test
  images) and with ``$KDSTUDY_MEMO_MB=0``; whether every best weight and every shift cell is identical.

GPU figures (packing, the graphed step, the thesis grid) are in ``benchmarks/gpu.py`` (``make bench-gpu``).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

STUDENT, TEACHER = "resnet18", "resnet34"


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


def random_teacher(store, tspec) -> None:
    """The KD runs' teacher: a finished run holding random weights (seeded: the same in every mode's store), made
    without training it: its speed is what is measured, not its accuracy."""
    import torch

    from kdengine.data.config import open_source
    from kdengine.models.factory import create_model
    from kdengine.store.lifecycle import FINISHED
    from kdengine.training.checkpoints import save_best

    if store.exists(tspec.run_id) and store.read_status(tspec.run_id).state == FINISHED:
        return
    classes = open_source(tspec.data).class_names
    torch.manual_seed(0)
    model = create_model(tspec.model, len(classes), warn=lambda m: None)
    store.create(tspec)
    save_best(store.checkpoint_dir(tspec.run_id), model, {"arch": tspec.model, "model": tspec.model, "in_chans": 1,
                                                          "num_classes": len(classes), "class_names": classes,
                                                          "run_id": tspec.run_id, "random_weights": True})
    store.claim(tspec.run_id, "bench")
    store.write_metrics(tspec.run_id, {"run_id": tspec.run_id, "random_weights": True})
    store.finish(tspec.run_id, FINISHED)


def _kd_trainer(store, dev, images: int, size: int, batch: int, kd, epochs: int = 1):
    """kdstudy's own trainer for one KD run with the settings ``kd`` (its teacher a finished run in ``store``),
    prepared: its feed is also what feeds the peers."""
    from kdengine.data.config import DataConfig
    from kdengine.runspec import TrainConfig, build_specs
    from kdengine.training.trainer import TrainState, Trainer

    spec = build_specs("normal", STUDENT, [TEACHER], DataConfig(source=f"synthetic:images={images},seed=5",
                                                                image_size=size),
                       TrainConfig(epochs=epochs, batch_size=batch), kd, 0)
    random_teacher(store, spec.teacher)
    if not store.exists(spec.run_id):
        store.create(spec)
    trainer = Trainer(store, spec, dev, progress=False, log=lambda m: None)
    trainer.prepare()
    trainer.state = TrainState()
    trainer._timing = {"t0": time.time(), "steps": 0}
    return trainer


def bench_peers(device: str = "cpu", images: int = 700, size: int = 64, batch: int = 32, repeats: int = 2,
                alpha: float = 0.9, temperature: float = 4.0, fast: dict | None = None) -> dict:
    import torch

    from kdengine.data.loader import Normalizer
    from kdengine.runspec import KDConfig
    from kdengine.store import RunStore
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import TrainState

    kd = KDConfig(alpha=alpha, temperature=temperature)
    dev = setup_device(device, **(fast or {}))
    norm = Normalizer(1, dev.channels_last).to(dev.device)
    sync = torch.cuda.synchronize if dev.is_cuda else (lambda: None)
    tmp = tempfile.TemporaryDirectory()
    store = RunStore(tmp.name)
    feeder = _kd_trainer(store, dev, images, size, batch, kd)  # the batches every loop reads
    n = len(feeder.feed)

    def epoch_loop(step, epoch: int = 1) -> float:
        sync()
        t0 = time.perf_counter()
        for raw in feeder.feed.epoch(epoch):
            x, y = feeder.feed.view(raw)
            step(x, y)
        sync()
        return time.perf_counter() - t0

    # -- kdstudy: its own trainer, warm (as the peers' loops reuse a warm feeder): one untimed epoch starts its
    # loader processes and captures its graph; the timed epochs are the steady state. Those fixed costs are
    # reported apart (``kdstudy.warmup_s``).
    warm: dict = {}

    def kdstudy_epoch() -> float:
        if "trainer" not in warm:
            warm["trainer"], warm["state"], warm["epoch"] = (
                _kd_trainer(store, dev, images, size, batch, kd), TrainState(), 1)
            sync()
            t0 = time.perf_counter()
            warm["trainer"].train_epoch(1, warm["state"])
            sync()
            warm["warmup_s"] = time.perf_counter() - t0
        warm["epoch"] += 1
        sync()
        t0 = time.perf_counter()
        warm["trainer"].train_epoch(warm["epoch"], warm["state"])
        sync()
        return time.perf_counter() - t0

    # -- timm: LogitDistillationTask -----------------------------------------------------------------------
    def timm_epoch() -> float:
        from timm.task.distillation import LogitDistillationTask

        student, teacher = _models(dev, 7)
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

        return epoch_loop(step)

    # -- torchdistill 1.1.5: KDLoss (alpha on the cross-entropy: alpha_td = 1 - alpha) ---------------------
    def torchdistill_epoch() -> float:
        from torchdistill.losses.mid_level import KDLoss

        student, teacher = _models(dev, 7)
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

        return epoch_loop(step)

    os.environ["KDSTUDY_NO_LOGIT_SHARING"] = "1"  # one student: nothing to share
    frameworks = {"kdstudy": kdstudy_epoch, "timm": timm_epoch, "torchdistill": torchdistill_epoch}
    times: dict[str, list[float]] = {name: [] for name in frameworks}
    results = {}
    try:
        timm_epoch()  # warm-up, untimed: the first epoch in a process pays for kernel selection and allocation
        for _ in range(repeats):  # interleaved, so that no framework always runs first or last
            for name, fn in frameworks.items():
                times[name].append(fn())
        for name in frameworks:
            best = min(times[name])
            results[name] = {"epoch_s": best, "images_per_s": n / best, "all_epoch_s": times[name]}
        results["kdstudy"]["warmup_s"] = warm.get("warmup_s")  # loader start-up, capture: a fixed cost, apart
    finally:
        os.environ.pop("KDSTUDY_NO_LOGIT_SHARING", None)
        feeder.feed.close()
        if "trainer" in warm:
            warm["trainer"].feed.close()
        tmp.cleanup()
    out = {"student": STUDENT, "teacher": TEACHER, "image_size": size, "batch": batch, "train_images": n,
           "input": feeder.feed.backend, "runtime": dev.runtime(), "kdstudy": results["kdstudy"]}
    for peer in ("timm", "torchdistill"):
        out[peer] = {**results[peer], "ratio": results["kdstudy"]["images_per_s"] / results[peer]["images_per_s"]}
    return out


def bench_sharing(device: str = "cpu", images: int = 700, size: int = 64, epochs: int = 2) -> dict:
    """One teacher, three students, with shared teacher outputs and without; fresh stores for both."""
    from safetensors.torch import load_file

    from kdengine.cli import main
    from kdengine.data import memo
    from kdengine.store import RunStore

    students = ["resnet10t", "test_resnet", "test_efficientnet"]
    common = ["--data", f"synthetic:images={images},seed=5", "--image-size", str(size), "--epochs", str(epochs),
              "--device", device, "--quiet", "--no-baseline", "--strategy", "normal", "--teacher", STUDENT]
    times, stores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("without", "with"):
            root = Path(tmp) / mode
            memo.clear_all()  # each mode makes its own training views (data/view_cache.py): the ratio is the sharing's
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


def bench_memos(device: str = "cpu", images: int = 1400, size: int = 32, epochs: int = 3) -> dict:
    """The demo's normal-KD trio (teacher, baseline, student) on one seed and its shift evaluation, in a fresh
    store and a fresh process state, with the memos off (the reference) and on."""
    import json

    from safetensors.torch import load_file

    from kdengine.cli import main
    from kdengine.data import memo
    from kdengine.data.cache import build_or_load
    from kdengine.data.config import DataConfig, open_source
    from kdengine.store import RunStore

    study = ["study", "run", "demo", "--set", f"data.source=synthetic:images={images},seed=5", "--set",
             f"data.image_size={size}", "--set", f"train.epochs={epochs}", "--set", "seeds=[0]",
             "--set", 'experiments=[{strategy="normal",teachers=["resnet10t"],students=["test_resnet"]}]',
             "--set", "shift.external=synthetic:images=700,seed=7,site=1", "--quiet", "--device", device]
    for source in (f"synthetic:images={images},seed=5", "synthetic:images=700,seed=7,site=1"):  # on disk for both
        build_or_load(open_source(DataConfig(source=source, image_size=size)), size)
    times, stores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, budget in (("off", "0"), ("on", None)):
            root = Path(tmp) / mode
            memo.clear_all()
            before = os.environ.get(memo.BUDGET_ENV)
            if budget is not None:
                os.environ[memo.BUDGET_ENV] = budget
            try:
                t0 = time.perf_counter()
                assert main([*study, "--runs-dir", str(root)]) == 0
                times[mode] = time.perf_counter() - t0
            finally:
                os.environ.pop(memo.BUDGET_ENV, None)
                if before is not None:
                    os.environ[memo.BUDGET_ENV] = before
            stores[mode] = RunStore(root)
        ids = sorted(stores["on"].list_ids())
        identical = ids == sorted(stores["off"].list_ids())
        for rid in ids:
            a = load_file(stores["on"].checkpoint_dir(rid) / "best.safetensors")
            b = load_file(stores["off"].checkpoint_dir(rid) / "best.safetensors")
            identical &= all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
            shift = [json.loads((st.run_dir(rid) / "shift.json").read_text()) for st in (stores["on"], stores["off"])]
            identical &= shift[0]["cells"] == shift[1]["cells"] and shift[0]["external"] == shift[1]["external"]
    return {"runs": len(ids), "images": images, "image_size": size, "epochs": epochs, "off_s": times["off"],
            "on_s": times["on"], "speedup": times["off"] / times["on"], "identical": identical}
