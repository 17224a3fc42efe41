"""Evaluating a finished run's best checkpoint under acquisition shift (and on external data).

The test images come from the run's decoded cache (nothing is decoded again); each batch is read once and
passed through every (shift, severity), so the cost is one forward pass per cell plus the shifts' own
arithmetic.

**Kept by request.** A run's results go into its folder, one entry per request (the shifts, severities, seed and
external data asked for): ``shift.json`` holds ``{"entries": {request: result}}``, and ``shift/<request>.npz`` the
per-image predictions (clean, every cell, external) that the robustness tables' intervals over test images are
made from. A request already answered is read back; another request adds its own entry and never replaces one
(``kdengine shift STUDY`` with other shifts leaves the study's own ``[shift]`` results as they are, and the study's
tables read the study's request). Cells another request already computed (same version and seed, same images) are
read back from its predictions, not computed again. ``--force`` computes the request's own entry again, no other.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace

import numpy as np
import torch

from ..atomic import atomic_path, write_json
from ..data.cache import build_or_load
from ..data.config import open_source
from ..data.corruptions import SHIFT_VERSION, SHIFTS, apply_shift
from ..reports.shift_request import same_request, shift_key
from ..data.memo import ArrayMemo, file_identity, rows_digest
from ..errors import UsageError
from ..metric_names import HEADLINE, SPLITS
from ..store import RunStore
from ..store.lifecycle import FINISHED
from ..store.records import read_shift_arrays, shift_entries
from ..store.runstore import SHIFT, read_json
from ..training.device import setup_device
from ..data.loader import channels_first
from ..training.metrics import split_metrics
from ..training.teacher import frozen_from_checkpoint

RESULT = SHIFT
FOLDER = "shift"  # shift/<request>.npz: each request's per-image predictions
DOC_VERSION = 2  # 2: results kept by request, with per-image predictions


def request_slug(key: dict) -> str:
    """A request as a file stem: ``all-sev1-5-seed0-3f2a9c1b`` (the shifts, severities and seed, readable; a
    digest of the whole key, external data included, so that two requests never share a file)."""
    shifts = "all" if list(key["shifts"]) == list(SHIFTS) else "+".join(key["shifts"])
    sev = key["severities"]
    sev_text = f"{sev[0]}-{sev[-1]}" if sev == list(range(sev[0], sev[-1] + 1)) and len(sev) > 2 else \
        ".".join(map(str, sev))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{shifts[:60]}-sev{sev_text}-seed{key['seed']}-{digest}"


def read_entries(store: RunStore, run_id: str) -> dict[str, dict]:
    """Every request's results of a run, by slug (a file from before requests were kept reads as one)."""
    return shift_entries(read_json(store.run_dir(run_id) / RESULT))


def read_shift(store: RunStore, run_id: str, key: dict | None = None) -> dict | None:
    """The results of one request (``key``), or of the latest request without one; None where there are none."""
    entries = read_entries(store, run_id)
    if key is not None:
        return next((e for e in entries.values() if e.get("key") == key), None)
    return max(entries.values(), key=lambda e: e.get("at", 0), default=None)


def summarize_cells(cells: dict[str, dict[str, dict]], clean: float) -> dict:
    """Mean accuracy under shift (over every shift and severity), the relative drop from clean, and each
    shift's mean over its severities."""
    per_shift = {name: float(np.mean([c["accuracy"] for c in levels.values()])) for name, levels in cells.items()}
    mean = float(np.mean([c["accuracy"] for levels in cells.values() for c in levels.values()]))
    return {"mean_accuracy": mean, "relative_drop": (clean - mean) / clean if clean > 0 else None,
            "per_shift": per_shift}


def _metrics(labels, probs, class_names) -> dict:
    """A cell's headline (accuracy, macro-F1, kappa, ECE) and its AUROC, for the task the labels say."""
    m = split_metrics(labels, probs, class_names)
    return {k: m.get(k) for k in ("n", *HEADLINE, "auroc")}


def _decide(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image what the model predicts: its class (argmax), or for a multi-label task each finding at 0.5."""
    return (probs >= 0.5).astype(np.int16) if labels.ndim == 2 else probs.argmax(1)


def _predict(model, images: np.ndarray, dev, batch: int, multilabel: bool = False):
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            # a copy: images kept by the memo are read-only, and torch wants to own what it wraps
            block = np.array(images[i:i + batch])
            x = torch.from_numpy(np.ascontiguousarray(channels_first(block, 3 if block.ndim == 4 else 1)))
            with dev.autocast():
                z = model(x.to(dev.device)).float()
                out.append((torch.sigmoid(z) if multilabel else torch.softmax(z, 1)).cpu().numpy())
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


def _known(store: RunStore, run_id: str, entries: dict[str, dict], key: dict, rows: np.ndarray) -> dict:
    """What other requests of this run already hold, on the same images at the same version and seed: {"clean":
    (predictions, metrics), (shift, severity): (predictions, metrics)}. Read back instead of computed again."""
    out: dict = {}
    for entry in entries.values():
        k = entry.get("key", {})
        if k.get("version") != key["version"] or k.get("seed") != key["seed"] or not entry.get("per_image"):
            continue
        arrays = read_shift_arrays(store.run_dir(run_id) / entry["per_image"])
        if arrays is None or not np.array_equal(arrays["row"], rows):
            continue
        out.setdefault("clean", (arrays["clean"], entry["clean"]))
        for name, levels in arrays["cells"].items():
            for severity, pred in levels.items():
                if severity in entry["cells"].get(name, {}):
                    out.setdefault((name, int(severity)), (pred, entry["cells"][name][severity]))
    return out


def evaluate_run(store: RunStore, run_id: str, shifts: list[str], severities: list[int], seed: int = 0,
                 external: str | None = None, dev=None, batch: int | None = None, force: bool = False,
                 log=print) -> dict:
    """The run's accuracy on clean test images and under every (shift, severity) of this request, with per-image
    predictions; kept as this request's entry (see the module's note). A request answered before is read back."""
    key = shift_key(shifts, severities, seed, external)
    slug = request_slug(key)
    entries = read_entries(store, run_id)
    mine = next((s for s, e in entries.items() if same_request(e.get("key"), key)), None)
    if mine is not None and not force and entries[mine].get("per_image") and \
            (store.run_dir(run_id) / entries[mine]["per_image"]).is_file():
        return entries[mine]
    if store.read_status(run_id).state != FINISHED:
        raise UsageError(f"{run_id} is not finished: shifts are evaluated on a finished run's best checkpoint")
    spec = store.load_spec(run_id)
    dev = dev or setup_device("auto")
    batch = batch or max(spec.train.batch_size, 64)
    t0 = time.perf_counter()
    source = open_source(spec.data)
    cache = build_or_load(source, spec.data.image_size, skip_bad=spec.data.skip_bad)
    rows = cache.rows("test")
    labels = cache.labels[rows]
    known = {} if force else _known(store, run_id, entries, key, rows)
    images = None
    model = None

    def predict(name: str | None, severity: int = 0) -> np.ndarray:
        nonlocal images, model
        if images is None:
            images = np.asarray(cache.images[rows])  # read once; every cell reuses it
            model, _ = frozen_from_checkpoint(store.checkpoint_dir(run_id), dev)
        x = images if name is None else _shifted(cache, images, rows, name, severity, seed)
        return _predict(model, x, dev, batch, cache.multilabel)

    names = source.class_names
    t_clean = time.perf_counter()
    if "clean" in known:
        clean_pred, clean = known["clean"]
    else:
        probs = predict(None)
        clean_pred, clean = _decide(probs, labels), _metrics(labels, probs, names)
    t_clean = time.perf_counter() - t_clean
    arrays = {"row": rows, "label": labels, "clean": clean_pred.astype(np.int16)}
    cells: dict[str, dict[str, dict]] = {}
    for name in shifts:
        cells[name] = {}
        for severity in sorted(severities):
            if (name, severity) in known:
                pred, cells[name][str(severity)] = known[(name, severity)]
            else:
                probs = predict(name, severity)
                pred, cells[name][str(severity)] = _decide(probs, labels), _metrics(labels, probs, names)
            arrays[f"cell:{name}:{severity}"] = pred.astype(np.int16)
    result = {"key": key, "run_id": run_id, "at": time.time(), "clean": clean, "cells": cells,
              **summarize_cells(cells, clean["accuracy"]), "per_image": f"{FOLDER}/{slug}.npz",
              "test_pass_s": round(t_clean, 4)}
    if external:
        if model is None:
            model, _ = frozen_from_checkpoint(store.checkpoint_dir(run_id), dev)
        result["external"], ext_labels, ext_pred = evaluate_external(model, external, spec, names, dev, batch)
        arrays["external_label"], arrays["external_pred"] = ext_labels, ext_pred.astype(np.int16)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    path = store.run_dir(run_id) / result["per_image"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    entries = read_entries(store, run_id)  # again: another process may have added a request meanwhile
    entries[mine or slug] = result
    write_json(store.run_dir(run_id) / RESULT, {"version": DOC_VERSION, "entries": entries})
    log(f"{run_id}: clean {clean['accuracy']:.4f}, under shift {result['mean_accuracy']:.4f} "
        f"(drop {result['relative_drop']:.1%})" + (f", external {result['external']['accuracy']:.4f}"
                                                    if external else ""))
    return result


def evaluate_external(model, external: str, spec, class_names: list[str], dev, batch: int):
    """Every image of another dataset with the same class names (another site), at the run's image size:
    (metrics, labels, predictions)."""
    cfg = replace(spec.data, source=external, cap_train=None, cap_test=None).resolved()
    src = open_source(cfg)
    if sorted(src.class_names) != sorted(class_names):
        raise UsageError(f"--external {external}: its classes ({', '.join(src.class_names)}) are not the run's "
                         f"({', '.join(class_names)})")
    cache = build_or_load(src, spec.data.image_size, skip_bad=cfg.skip_bad)
    rows = np.concatenate([cache.rows(s) for s in SPLITS])
    remap = np.array([class_names.index(n) for n in src.class_names])  # the external order -> the run's
    if cache.multilabel:  # findings: the external columns put in the run's order
        labels = np.empty_like(cache.labels[rows])
        labels[:, remap] = cache.labels[rows]
    else:
        labels = remap[cache.labels[rows]]
    probs = _predict(model, np.asarray(cache.images[rows]), dev, batch, cache.multilabel)
    return {"source": cfg.source, **_metrics(labels, probs, class_names)}, labels, _decide(probs, labels)
