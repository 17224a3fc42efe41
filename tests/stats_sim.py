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

    records = runs(base_specs, 0.0)
    for (t, _), specs_ in student_specs.items():
        if t in teachers:
            records += runs(specs_, effect)
    return records
