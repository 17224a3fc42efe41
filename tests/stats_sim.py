"""Simulated studies for the statistics' calibration tests: finished runs as in-memory records (no training, no
files), with per-image predictions drawn from a model where the truth is known.

The model (per simulated study): a fresh test set of N images, image i with a difficulty a_i; each method (the
baseline, and the student of each teacher) sees image i at a_i + e_mi, e_mi drawn once per method and image (so a
method is better on some images and worse on others: the test set's composition matters), plus a planted shift
``effect`` for the students; each run (method, seed) adds a run effect u (the seed's luck, shared by its val and
test splits) and its per-image coin flips. With effect = 0 the methods are exchangeable: no true gain.
"""
from __future__ import annotations

import numpy as np

from kdengine.data.config import DataConfig
from kdengine.store.records import RunRecord
from kdengine.runspec import KDConfig, TrainConfig, build_specs
from kdengine.store.lifecycle import FINISHED
from kdengine.store.status import RunStatus

TEACHERS = ("resnet18", "resnet34", "resnet50", "vgg11")
DATA = DataConfig(source="synthetic", image_size=32)


def _specs(seeds: int, temperatures=(4.0,)):
    """(baseline spec per seed, {(teacher, T): student spec per seed})."""
    train = TrainConfig(epochs=2)
    base = [build_specs("baseline", "test_resnet", [], DATA, train, KDConfig(), s) for s in range(seeds)]
    students = {(t, T): [build_specs("normal", "test_resnet", [t], DATA, train, KDConfig(temperature=T), s)
                         for s in range(seeds)] for t in TEACHERS for T in temperatures}
    return base, students


_CACHE: dict = {}


def specs(seeds: int, temperatures=(4.0,)):
    key = (seeds, tuple(temperatures))
    if key not in _CACHE:
        _CACHE[key] = _specs(seeds, temperatures)
    return _CACHE[key]


def record(spec, correct: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> RunRecord:
    """A finished run whose accuracy on each split is the mean of its per-image correctness."""
    metrics = {"class_names": ["a", "b"], "synthetic": True, "teachers": [], "train": {"accuracy": 0.9}}
    preds = {}
    for split, c in correct.items():
        label = np.zeros(len(c), np.int16)
        preds[split] = {"row": rows[split], "label": label, "pred": (1 - c).astype(np.int16)}
        metrics[split] = {"accuracy": float(c.mean())}
    return RunRecord(run_id=spec.run_id, spec=spec, status=RunStatus(FINISHED), metrics=metrics, preds=preds)


def _every_method(runs, base_specs, student_specs, teachers, effect: float) -> list[RunRecord]:
    """The baselines' runs, then each chosen teacher's students' with the planted effect."""
    records = runs(base_specs, 0.0)
    for (t, _), specs_ in student_specs.items():
        if t in teachers:
            records += runs(specs_, effect)
    return records


def study(rng: np.random.Generator, seeds: int = 3, images: int = 300, effect: float = 0.0,
          temperatures=(4.0,), method_sd: float = 0.8, seed_sd: float = 0.15, val_images: int = 300,
          teachers=TEACHERS) -> list[RunRecord]:
    """One simulated study: a baseline and a normal-KD student per teacher (and temperature) over ``seeds``."""
    base_specs, student_specs = specs(seeds, temperatures)
    n = {"val": val_images, "test": images}
    rows = {"val": np.arange(val_images), "test": np.arange(10_000, 10_000 + images)}
    a = {s: rng.normal(1.0, 1.5, n[s]) for s in n}

    def runs(specs_, shift):
        e = {s: rng.normal(0.0, method_sd, n[s]) for s in n}  # this method's images, once
        out = []
        for spec in specs_:
            u = rng.normal(0.0, seed_sd)  # this seed's luck, on val and test alike
            correct = {s: (rng.random(n[s]) < 1 / (1 + np.exp(-(a[s] + e[s] + u + shift)))).astype(np.float64)
                       for s in n}
            out.append(record(spec, correct, rows))
        return out

    return _every_method(runs, base_specs, student_specs, teachers, effect)


# -- under shift (issue 35, item 2) --------------------------------------------------------------------------------
SHIFT_KEY = {"version": 1, "shifts": ["blur", "jpeg"], "severities": [1, 3], "seed": 0, "external": None}


def shifted(rng: np.random.Generator, seeds: int = 10, images: int = 300, teachers=("resnet18", "resnet34"),
            method_sd: float = 0.8, shift_sd: float = 0.8, seed_sd: float = 0.15, effect: float = 0.0,
            temperatures=(4.0,)) -> list[RunRecord]:
    """A study evaluated under shift, with its per-image predictions kept: a fresh test set; each method (the
    baseline, each teacher's student) has its own image effects on clean images and its own robustness to each image
    under shift (mostly shared by its shifts and severities; drawn once per method: the test set's composition
    matters under shift as on clean);
    each seed its luck; ``effect`` is planted for the students under shift only."""
    base_specs, student_specs = specs(seeds, temperatures)
    rows = {"val": np.arange(50), "test": np.arange(10_000, 10_000 + images)}
    a = rng.normal(1.0, 1.5, images)
    cells = [(name, sev) for name in SHIFT_KEY["shifts"] for sev in SHIFT_KEY["severities"]]

    def runs(specs_, plus):
        e = rng.normal(0.0, method_sd, images)
        common = rng.normal(0.0, shift_sd, images)  # how this method holds up on each image, under any shift
        g = {c: common + rng.normal(0.0, 0.3, images) for c in cells}
        out = []
        for spec in specs_:
            u = rng.normal(0.0, seed_sd)
            flip = lambda logit: (rng.random(images) < 1 / (1 + np.exp(-logit))).astype(np.float64)  # noqa: E731
            clean = flip(a + e + u)
            under = {c: flip(a + e + g[c] + u - 0.3 * c[1] + plus) for c in cells}
            r = record(spec, {"val": np.ones(50), "test": clean}, rows)
            acc = {c: float(v.mean()) for c, v in under.items()}
            mean = float(np.mean(list(acc.values())))
            r.shift = {"key": SHIFT_KEY, "clean": {"accuracy": float(clean.mean())}, "mean_accuracy": mean,
                       "relative_drop": (clean.mean() - mean) / clean.mean() if clean.mean() else None,
                       "per_shift": {n: float(np.mean([acc[(n, s)] for s in SHIFT_KEY["severities"]]))
                                     for n in SHIFT_KEY["shifts"]},
                       "cells": {n: {str(s): {"accuracy": acc[(n, s)]} for s in SHIFT_KEY["severities"]}
                                 for n in SHIFT_KEY["shifts"]}}
            label = np.zeros(images, np.int16)
            r.shift_preds = {"row": rows["test"], "label": label, "clean": (1 - clean).astype(np.int16),
                             "cells": {n: {str(s): (1 - under[(n, s)]).astype(np.int16)
                                           for s in SHIFT_KEY["severities"]} for n in SHIFT_KEY["shifts"]},
                             "external": None}
            out.append(r)
        return out

    return _every_method(runs, base_specs, student_specs, teachers, effect)


# -- a family of gains of known size, on the accuracy scale (items 4 and the planner) ---------------------------------
def family(rng: np.random.Generator, seeds: int, images: int, effects: list[float], tau: float = 0.1,
           seed_sd: float = 0.02) -> list[RunRecord]:
    """A baseline and one student per effect (up to 4, one per teacher) on a fresh test set, per-image correctness
    drawn with probability b_i (+ the student's image affinity e_i, uniform in ±tau) + the seed's luck + the effect:
    the expected gain of student k is exactly effects[k] (the probabilities never reach 0 or 1)."""
    assert len(effects) <= len(TEACHERS)
    base_specs, student_specs = specs(seeds)
    rows = {"val": np.arange(10), "test": np.arange(images)}
    b = rng.uniform(0.25, 0.55, images)

    def draw(p):
        assert p.min() > 0 and p.max() < 1
        return (rng.random(images) < p).astype(np.float64)

    records = [record(s, {"val": np.ones(10), "test": draw(b + rng.normal(0, seed_sd))}, rows) for s in base_specs]
    for teacher, effect in zip(TEACHERS, effects):
        e = rng.uniform(-tau, tau, images)
        records += [record(s, {"val": np.ones(10), "test": draw(b + e + effect + rng.normal(0, seed_sd))}, rows)
                    for s in student_specs[(teacher, 4.0)]]
    return records


# -- ranking metrics (issue 34): probabilities, AUROC, AP, sensitivity and specificity -------------------------------
def _columns(y: np.ndarray, p: np.ndarray):
    """Per class (0/1 truth, score) over the images whose label is known, as the engine's binary_columns."""
    if y.ndim == 2:
        return [((y[y[:, k] >= 0, k] == 1), p[y[:, k] >= 0, k]) for k in range(y.shape[1])]
    if p.shape[1] == 2:
        return [(y == 1, p[:, 1])]
    return [(y == k, p[:, k]) for k in range(p.shape[1])]


def _youden(t: np.ndarray, s: np.ndarray) -> float:
    """The score that maximises sensitivity + specificity - 1 (called positive at >= it)."""
    order = np.argsort(-s, kind="mergesort")
    tpr, fpr = np.cumsum(t[order]) / t.sum(), np.cumsum(~t[order]) / (~t).sum()
    return float(s[order][int(np.argmax(tpr - fpr))])


def ranking_values(y: np.ndarray, p: np.ndarray, thresholds: list[float]) -> dict:
    """AUROC, AP, sensitivity and specificity, each a mean over the classes, computed plainly for continuous scores
    (no ties): the engine's scikit-learn numbers, about 30 times faster (a test checks they agree)."""
    from scipy.stats import rankdata

    auroc, ap, sens, spec = [], [], [], []
    for (t, s), thr in zip(_columns(y, p), thresholds):
        m, n = int(t.sum()), int((~t).sum())
        auroc.append((rankdata(s)[t].sum() - m * (m + 1) / 2) / (m * n))
        order = np.argsort(-s, kind="mergesort")
        hits = t[order]
        ap.append(float((np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)).mean()))
        sens.append(float((s[t] >= thr).mean()))
        spec.append(float((s[~t] < thr).mean()))
    return {"auroc": float(np.mean(auroc)), "ap": float(np.mean(ap)), "sensitivity": float(np.mean(sens)),
            "specificity": float(np.mean(spec)), "thresholds": {f"c{k}": thr for k, thr in enumerate(thresholds)}}


def scored_record(spec, labels: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                  rows: dict[str, np.ndarray]) -> RunRecord:
    """A finished run whose predictions keep their probabilities (float32, as stored), its metrics on them with
    thresholds chosen on val by Youden's J and applied to test."""
    k = probs["test"].shape[1]
    multilabel = labels["test"].ndim == 2
    p32 = {s: v.astype(np.float32) for s, v in probs.items()}
    thresholds = [_youden(t, s) for t, s in _columns(labels["val"], p32["val"].astype(np.float64))]
    metrics = {"class_names": [f"c{i}" for i in range(k)], "synthetic": True, "teachers": [],
               "train": {"accuracy": 0.9},
               "task": {"kind": "multilabel" if multilabel else "binary" if k == 2 else "multiclass",
                        "threshold_rule": "youden", "channels": 1}}
    preds = {}
    for split in ("val", "test"):
        p, y = p32[split], labels[split]
        pred = (p >= 0.5).astype(np.int16) if multilabel else p.argmax(1).astype(np.int16)
        preds[split] = {"row": rows[split], "label": y.astype(np.int16), "pred": pred, "probs": p}
        known = y >= 0
        acc = float((pred[known] == y[known]).mean()) if multilabel else float((pred == y).mean())
        metrics[split] = {"accuracy": acc, **ranking_values(y, p.astype(np.float64), thresholds)}
    return RunRecord(run_id=spec.run_id, spec=spec, status=RunStatus(FINISHED), metrics=metrics, preds=preds)


def _labels(rng, n: int, kind: str, classes: int, prevalence: float, unknown: float) -> np.ndarray:
    if kind == "multilabel":
        y = (rng.random((n, classes)) < prevalence).astype(np.int64)
        y[rng.random((n, classes)) < unknown] = -1
        return y
    if kind == "binary":
        return (rng.random(n) < prevalence).astype(np.int64)
    return rng.integers(0, classes, n)


def ranked(rng: np.random.Generator, seeds: int = 3, images: int = 300, effect: float = 0.0, kind: str = "binary",
           classes: int = 3, separation: float = 1.2, image_sd: float = 1.0, method_sd: float = 0.6,
           seed_sd: float = 0.1, prevalence: float = 0.3, unknown: float = 0.1, val_images: int = 150,
           teachers=TEACHERS) -> list[RunRecord]:
    """A study scored by probabilities, on a fresh test (and val) set: per class, a run's logit for image i is
    ``(separation + u + effect) * y_i + a_i + e_i + noise``: y_i the image's truth for that class (one-vs-rest for a
    multi-class task, each finding for a multi-label one, of which a share ``unknown`` is -1), a_i how hard the
    image is (shared by every model), e_i the method's own take on it (drawn once per method: the test set's
    composition matters), u the seed's luck in separation, and per run noise; a multi-class task's probabilities are
    the softmax, the others' the sigmoid (a binary task's two columns, the positive class second). ``effect`` widens
    the students' separation (an AUROC gain); with 0 every method is exchangeable: no true gain in any metric."""
    base_specs, student_specs = specs(seeds)
    n = {"val": val_images, "test": images}
    rows = {"val": np.arange(val_images), "test": np.arange(10_000, 10_000 + images)}
    width = 1 if kind == "binary" else classes
    y = {s: _labels(rng, n[s], kind, classes, prevalence, unknown) for s in n}
    truth = {s: (y[s][:, None] if kind == "binary" else y[s] if kind == "multilabel" else
                 np.eye(classes, dtype=np.int64)[y[s]]) == 1 for s in n}
    a = {s: rng.normal(0.0, image_sd, (n[s], width)) for s in n}

    def runs(specs_, plus):
        e = {s: rng.normal(0.0, method_sd, (n[s], width)) for s in n}
        out = []
        for spec in specs_:
            u = rng.normal(0.0, seed_sd)
            probs = {}
            for s in n:
                z = (separation + u + plus) * truth[s] + a[s] + e[s] + rng.normal(0.0, 1.0, (n[s], width))
                if kind == "binary":
                    p1 = 1 / (1 + np.exp(-(z[:, 0] - separation / 2)))
                    probs[s] = np.stack([1 - p1, p1], 1)
                elif kind == "multilabel":
                    probs[s] = 1 / (1 + np.exp(-(z - separation / 2)))
                else:
                    w = np.exp(z - z.max(1, keepdims=True))
                    probs[s] = w / w.sum(1, keepdims=True)
            out.append(scored_record(spec, y, probs, rows))
        return out

    return _every_method(runs, base_specs, student_specs, teachers, effect)


def write_store(records: list[RunRecord], root) -> None:
    """Simulated runs written into a run store as a finished run is (its spec, events of two epochs, predictions.npz
    by the store's own writer, metrics.json with a confusion matrix per class or per finding), so that the CLI and
    the report read them from their files."""
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue

    store = RunStore(root)
    for r in records:
        enqueue(store, r.spec)
        rid = r.run_id
        store.append_event(rid, {"type": "start", "classes": r.metrics["class_names"], "epochs": 2})
        for epoch in (1, 2):
            store.append_event(rid, {"type": "step", "epoch": epoch, "step": 1, "global_step": epoch * 4,
                                     "loss": 1.0 / epoch})
            store.append_event(rid, {"type": "epoch", "epoch": epoch, "lr": 0.001,
                                     "train": {"loss": 1.0 / epoch, "accuracy": 0.6, "macro_f1": 0.5},
                                     "val": {"loss": 1.1 / epoch, "accuracy": 0.55, "macro_f1": 0.5, "kappa": 0.2,
                                             "ece": 0.1}})
        store.claim(rid, "simulated")
        metrics = {**r.metrics, "run_id": rid, "best_epoch": 2, "epochs_run": 2}
        for split, p in r.preds.items():
            y, pred, names = p["label"], p["pred"], r.metrics["class_names"]
            if y.ndim == 2:
                confusion = {c: [[int(((y[:, k] == a) & (pred[:, k] == b)).sum()) for b in (0, 1)] for a in (0, 1)]
                             for k, c in enumerate(names)}
            else:
                k = len(names)
                confusion = [[int(((y == a) & (pred == b)).sum()) for b in range(k)] for a in range(k)]
            metrics[split] = {**metrics[split], "confusion": confusion}
        store.write_predictions(rid, {s: {"probs": p["probs"], "labels": p["label"], "rows": p["row"]}
                                      for s, p in r.preds.items()})
        store.write_metrics(rid, metrics)
        store.finish(rid, "finished")
