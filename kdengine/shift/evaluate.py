"""Evaluating a finished run's best checkpoint under acquisition shift (and on external data).

The test images come from the run's decoded cache (nothing is decoded again); each batch is read once and
passed through every (shift, severity), so the cost is one forward pass per cell plus the shifts' own
arithmetic. The result goes into the run's folder (``shift.json``, written atomically) beside its metrics:
computed once per configuration, and read by every table, the report and the TUI.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from ..atomic import write_json
from ..data.cache import build_or_load
from ..data.config import open_source
from ..data.corruptions import SHIFT_VERSION, apply_shift
from ..data.memo import ArrayMemo, file_identity, rows_digest
from ..errors import UsageError
from ..metric_names import HEADLINE, SPLITS
from ..store import RunStore
from ..store.lifecycle import FINISHED
from ..store.runstore import SHIFT, read_json
from ..training.device import setup_device
from ..training.metrics import classification_metrics
from ..training.teacher import frozen_from_checkpoint

RESULT = SHIFT


def shift_key(shifts: list[str], severities: list[int], seed: int, external: str | None) -> dict:
    return {"version": SHIFT_VERSION, "shifts": list(shifts), "severities": list(severities), "seed": seed,
            "external": external}


def read_shift(store: RunStore, run_id: str) -> dict | None:
    result = read_json(store.run_dir(run_id) / RESULT)
    return result if isinstance(result, dict) and "cells" in result else None


def summarize_cells(cells: dict[str, dict[str, dict]], clean: float) -> dict:
    """Mean accuracy under shift (over every shift and severity), the relative drop from clean, and each
    shift's mean over its severities."""
    per_shift = {name: float(np.mean([c["accuracy"] for c in levels.values()])) for name, levels in cells.items()}
    mean = float(np.mean([c["accuracy"] for levels in cells.values() for c in levels.values()]))
    return {"mean_accuracy": mean, "relative_drop": (clean - mean) / clean if clean > 0 else None,
            "per_shift": per_shift}


def _metrics(labels, probs, class_names) -> dict:
    m = classification_metrics(labels, probs, class_names)
    return {k: m[k] for k in ("n", *HEADLINE)}


def _predict(model, images: np.ndarray, dev, batch: int):
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            # a copy: images kept by the memo are read-only, and torch wants to own what it wraps
            x = torch.from_numpy(np.array(images[i:i + batch])).unsqueeze(1).to(dev.device)
            with dev.autocast():
                out.append(torch.softmax(model(x).float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


SHIFTED = ArrayMemo("test images under shift")


def _shifted(cache, images: np.ndarray, rows: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """The test images under one (shift, severity): a pure function of the decoded images, the rows and the
    seed, so computed once per process for every run of the same data (a study evaluates each of its runs)."""
    key = (*file_identity(cache.path), rows_digest(rows), SHIFT_VERSION, name, int(severity), int(seed))
    kept = SHIFTED.get(key)
    if kept is not None:
        return kept[0]
    shifted = apply_shift(images, name, severity, seed, rows)
    SHIFTED.put(key, shifted)
    return shifted


def evaluate_run(store: RunStore, run_id: str, shifts: list[str], severities: list[int], seed: int = 0,
                 external: str | None = None, dev=None, batch: int | None = None, force: bool = False,
                 log=print) -> dict:
    """The run's accuracy on clean test images and under every (shift, severity); stored in ``shift.json``.

    A request for other shifts or severities (same seed) adds to what is stored: the cells already there are
    read back, the missing ones computed, and shift.json holds the union (a subset never overwrites more)."""
    previous = read_shift(store, run_id)
    old_key = previous.get("key", {}) if previous is not None else {}
    mergeable = previous is not None and not force and old_key.get("version") == SHIFT_VERSION \
        and old_key.get("seed") == seed
    if mergeable:
        shifts = list(dict.fromkeys([*old_key.get("shifts", []), *shifts]))
        severities = sorted({*old_key.get("severities", []), *severities})
        external = external or old_key.get("external")
    key = shift_key(shifts, severities, seed, external)
    if mergeable and old_key == key:
        return previous
    known = previous.get("cells", {}) if mergeable else {}
    spec = store.load_spec(run_id)
    if store.read_status(run_id).state != FINISHED:
        raise UsageError(f"{run_id} is not finished: shifts are evaluated on a finished run's best checkpoint")
    dev = dev or setup_device("auto")
    batch = batch or max(spec.train.batch_size, 64)
    t0 = time.perf_counter()
    source = open_source(spec.data)
    cache = build_or_load(source, spec.data.image_size, skip_bad=spec.data.skip_bad)
    rows = cache.rows("test")
    labels = cache.labels[rows]
    images = np.asarray(cache.images[rows])  # read once; every cell reuses it
    model, _ = frozen_from_checkpoint(store.checkpoint_dir(run_id), dev)
    names = source.class_names
    t_clean = time.perf_counter()
    clean = previous["clean"] if mergeable else _metrics(labels, _predict(model, images, dev, batch), names)
    t_clean = time.perf_counter() - t_clean
    cells: dict[str, dict[str, dict]] = {}
    for name in shifts:
        cells[name] = {}
        for severity in severities:
            if str(severity) in known.get(name, {}):  # stored by an earlier request: read back
                cells[name][str(severity)] = known[name][str(severity)]
                continue
            shifted = _shifted(cache, images, rows, name, severity, seed)
            cells[name][str(severity)] = _metrics(labels, _predict(model, shifted, dev, batch), names)
    result = {"key": key, "run_id": run_id, "clean": clean, "cells": cells,
              **summarize_cells(cells, clean["accuracy"]),
              "test_pass_s": previous.get("test_pass_s") if mergeable else round(t_clean, 4)}
    if external:
        same = mergeable and (previous.get("external") or {}).get("source") is not None and \
            old_key.get("external") == external
        result["external"] = previous["external"] if same else evaluate_external(model, external, spec, names, dev,
                                                                                 batch)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(store.run_dir(run_id) / RESULT, result)
    log(f"{run_id}: clean {clean['accuracy']:.4f}, under shift {result['mean_accuracy']:.4f} "
        f"(drop {result['relative_drop']:.1%})" + (f", external {result['external']['accuracy']:.4f}"
                                                    if external else ""))
    return result


def evaluate_external(model, external: str, spec, class_names: list[str], dev, batch: int) -> dict:
    """Every image of another dataset with the same class names (another site), at the run's image size."""
    cfg = replace(spec.data, source=external, cap_train=None, cap_test=None).resolved()
    src = open_source(cfg)
    if sorted(src.class_names) != sorted(class_names):
        raise UsageError(f"--external {external}: its classes ({', '.join(src.class_names)}) are not the run's "
                         f"({', '.join(class_names)})")
    cache = build_or_load(src, spec.data.image_size, skip_bad=cfg.skip_bad)
    rows = np.concatenate([cache.rows(s) for s in SPLITS])
    remap = np.array([class_names.index(n) for n in src.class_names])  # the external order -> the run's
    labels = remap[cache.labels[rows]]
    probs = _predict(model, np.asarray(cache.images[rows]), dev, batch)
    return {"source": cfg.source, **_metrics(labels, probs, class_names)}
