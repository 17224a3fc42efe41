"""Fake but well-formed runs for TUI tests (no training needed), waiting on a pilot, and process clean-up."""
from __future__ import annotations

import os
import signal
import time

from kdengine.data.config import DataConfig
from kdengine.runspec import KDConfig, TrainConfig, build_specs
from kdengine.store import RunStore
from kdengine.store.queue import enqueue

CLASSES = ["elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"]


def _metrics(run_id, acc, teachers=()):
    n = 70
    cm = [[8 if i == j else (1 if j == (i + 1) % 7 else 0) for j in range(7)] for i in range(7)]
    split = {"n": n, "loss": 0.5, "accuracy": acc, "macro_f1": acc - 0.01, "kappa": acc - 0.1, "ece": 0.05,
             "confusion": cm, "report": {c: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 9} for c in CLASSES}}
    m = {"run_id": run_id, "class_names": CLASSES, "best_epoch": 2, "epochs_run": 2, "synthetic": True,
         "teachers": list(teachers), "train": dict(split, accuracy=acc + 0.05), "val": dict(split), "test": dict(split)}
    if teachers:
        for s in ("train", "val", "test"):
            m[s]["agreement"] = 0.9
    return m


def fake_finished_store(root, strategy="normal", teacher="resnet18", student="test_resnet", seed=0, epochs=2,
                        accuracies=(0.81, 0.72, 0.76)):
    """A store with a finished teacher (also the teacher's baseline), the student's baseline and a KD student,
    with the given test accuracies (teacher, baseline, student)."""
    store = RunStore(root)
    data = DataConfig(source="synthetic", image_size=32)
    train = TrainConfig(epochs=epochs)
    student_spec = build_specs(strategy, student, [teacher], data, train, KDConfig(), seed)
    baseline = build_specs("baseline", student, [], data, train, KDConfig(), seed)
    for spec, acc in zip((student_spec.teacher, baseline, student_spec), accuracies):
        known = len(store.list_ids())
        enqueue(store, spec)
        rid = spec.run_id
        if len(store.list_ids()) > known:  # a new run: one second after the last, so the list order is fixed
            os.utime(store.run_dir(rid) / "spec.json", (1_790_000_000 + known, 1_790_000_000 + known))
        store.append_event(rid, {"type": "start", "classes": CLASSES, "epochs": 2})
        for epoch in (1, 2):
            store.append_event(rid, {"type": "step", "epoch": epoch, "step": 1, "global_step": epoch * 4, "loss": 2.0 / epoch})
            store.append_event(rid, {"type": "epoch", "epoch": epoch, "lr": 0.001,
                                     "train": {"loss": 2.0 / epoch, "accuracy": acc / (3 - epoch), "macro_f1": 0.5},
                                     "val": {"loss": 2.2 / epoch, "accuracy": acc / (3 - epoch) - 0.02, "macro_f1": 0.5, "kappa": 0.4, "ece": 0.1},
                                     "val_confusion": _metrics(rid, acc)["val"]["confusion"]})
        teachers = [{"run_id": spec.teacher.run_id, "model": teacher, "val_accuracy": 0.81}] if spec.kind == "kd" else []
        store.claim(rid, "fake")
        store.write_metrics(rid, _metrics(rid, acc, teachers))
        store.finish(rid, "finished")
    return store, student_spec, baseline


def kill_workers(pids):
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass


def _shift(acc: float) -> dict:
    """A shift.json for a run of clean test accuracy ``acc`` (blur at severities 1, 3, 5)."""
    cells = {"blur": {str(s): {"n": 70, "accuracy": acc - 0.05 * s, "macro_f1": acc - 0.05 * s - 0.01,
                                "kappa": acc - 0.2, "ece": 0.1} for s in (1, 3, 5)}}
    mean = sum(c["accuracy"] for c in cells["blur"].values()) / 3
    return {"key": {"version": 1, "shifts": ["blur"], "severities": [1, 3, 5], "seed": 0, "external": None},
            "clean": {"n": 70, "accuracy": acc, "macro_f1": acc, "kappa": acc, "ece": 0.05}, "cells": cells,
            "mean_accuracy": mean, "relative_drop": (acc - mean) / acc, "per_shift": {"blur": mean}}


def fake_study_store(root, seeds: int = 16, live: bool = True, shifted: bool = False):
    """A store of about a hundred runs: the demo's grid over ``seeds`` seeds, recorded as the study 'grid';
    most finished, some running (this process plays their worker), some queued, one failed, some stopped after
    their first epoch. ``shifted``: the finished runs were evaluated under shift (blur, severities 1, 3, 5)."""
    import time

    from kdengine.store.liveness import process_start
    from kdengine.study.expand import expand
    from kdengine.study.registry import save_study
    from kdengine.study.schema import load_study

    store = RunStore(root)
    # the snapshots' store, fixed: the demo at batch 32 and lr 1e-3 (its settings before the demo changed)
    study = load_study("demo", sets=[f"seeds={list(range(seeds))}", "data.image_size=32", "train.epochs=2",
                                     "train.batch_size=32", "train.lr=0.001"])
    plan = expand(study)
    save_study(store, study, plan)
    for i, p in enumerate(plan):
        enqueue(store, p.spec)
    base = 1_790_000_000
    for i, rid in enumerate(store.list_ids()):  # creation order, one second apart: the same list every time
        os.utime(store.run_dir(rid) / "spec.json", (base + i, base + i))
    for i, p in enumerate(plan):
        rid = p.run_id
        spec = p.spec
        acc = 0.55 + 0.3 * ((i * 37) % 100) / 100
        kind = i % 17
        if kind == 5 and live:  # running, mid-epoch
            store.append_event(rid, {"type": "start", "classes": CLASSES, "epochs": 2, "steps_per_epoch": 4})
            store.append_event(rid, {"type": "step", "epoch": 1, "step": 2, "global_step": 2, "loss": 1.7})
            store.write_status(rid, "running", worker="fake", pid=os.getpid(), pid_start=process_start(os.getpid()),
                               heartbeat=time.time(), progress={"phase": "training", "epoch": 1, "epochs": 2,
                                                                "step": 2, "steps": 4, "global_step": 2,
                                                                "total_steps": 8, "best_val_accuracy": 0.0,
                                                                "eta_s": 125.0},
                               trained_on={"device": "cpu", "gpu": None, "host": "box"})
            continue
        if kind == 9:  # queued, waiting for a worker
            continue
        if kind == 13:
            store.claim(rid, "fake")
            store.finish(rid, "failed", "corrupt or unreadable image: /data/x.png (use --skip-bad)")
            continue
        if kind == 15:  # stopped by the user after its first epoch: it resumes after it
            store.claim(rid, "fake")
            store.append_event(rid, {"type": "start", "classes": CLASSES, "epochs": 2, "steps_per_epoch": 4})
            store.append_event(rid, {"type": "epoch", "epoch": 1, "lr": 0.001,
                                     "train": {"loss": 2.0, "ce": 1.9, "accuracy": acc / 2, "macro_f1": 0.5},
                                     "val": {"loss": 2.2, "accuracy": acc / 2 - 0.02, "macro_f1": 0.5, "kappa": 0.4,
                                             "ece": 0.1}, "val_confusion": _metrics(rid, acc)["val"]["confusion"]})
            store.heartbeat(rid, progress={"phase": "training", "epoch": 2, "epochs": 2, "epochs_done": 1,
                                           "step": 1, "steps": 4, "global_step": 5, "total_steps": 8,
                                           "best_val_accuracy": round(acc / 2 - 0.02, 4), "eta_s": 30.0})
            store.finish(rid, "stopped", "stopped by the user")
            continue
        store.append_event(rid, {"type": "start", "classes": CLASSES, "epochs": 2, "steps_per_epoch": 4})
        for epoch in (1, 2):
            store.append_event(rid, {"type": "epoch", "epoch": epoch, "lr": 0.001,
                                     "train": {"loss": 2.0 / epoch, "accuracy": acc / (3 - epoch), "macro_f1": 0.5},
                                     "val": {"loss": 2.2 / epoch, "accuracy": acc / (3 - epoch) - 0.02,
                                             "macro_f1": 0.5, "kappa": 0.4, "ece": 0.1},
                                     "val_confusion": _metrics(rid, acc)["val"]["confusion"]})
        teachers = [{"run_id": t.run_id, "model": t.model, "val_accuracy": 0.81} for t in spec.teachers]
        store.write_metrics(rid, _metrics(rid, acc, teachers))
        store.write_status(rid, "finished", trained_on={"device": "cpu", "gpu": None, "host": "box"})
        if shifted:
            from kdengine.atomic import write_json

            write_json(store.run_dir(rid) / "shift.json", _shift(acc))
    return store, plan


async def wait_for(pilot, predicate, timeout=90.0, step=0.25):
    """Poll a condition between pilot pauses: a fixed pause is a race on a slower machine."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await pilot.pause(step)
    raise AssertionError("condition not met in time")


async def open_launch(pilot, app):
    """The launch form, opened with its key."""
    await pilot.press("2")
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
    return app.screen
