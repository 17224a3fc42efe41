"""``kdengine explain``: where finished runs look, on the same images, and whether a KD student looks where its
teacher does, more than its own baseline does.

For each data configuration the same N images are explained for every model: N of the split, balanced over the
classes, fixed by a seed (``measures.balanced_rows``); with ``--shift NAME:SEVERITY`` the same images under that
acquisition shift. Each run gets, once per configuration (``explain.json``, like ``shift.json``, keyed by the
request; a request already answered is read back):

- per image: its map on a 32 x 32 grid, the image's thumbnail, the true, target and predicted class, and the
  map's share in the border band (a shortcut indicator);
- ``explain/<request>.npz``: the full-resolution maps and images, for figures;
- a KD run also its **agreement** with its teacher (Spearman rank correlation of the grids, IoU of their top-20%
  cells), beside its baseline's agreement with the same teacher, per image; and the gallery
  ``explain/<request>.png`` (image, teacher, baseline, student; each model's class and whether it was right).

Maps answer for the *true* class by default (``--target true``): every model is asked about the same class, so
their maps compare; ``--target predicted`` explains each model's own decision instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_path, write_json
from ..data.cache import build_or_load
from ..data.config import open_source
from ..data.corruptions import apply_shift
from ..errors import UsageError
from ..reports import figures as F
from ..runspec import baseline_of
from ..store import RunStore
from ..store.lifecycle import FINISHED
from ..store.runstore import EXPLAIN, read_json
from . import measures as M
from .cam import cam_class, compute_maps, load_for_maps, predict, target_layer
from .request import VERSION, Request


@dataclass
class Outcome:
    explained: list[str] = field(default_factory=list)  # maps computed now
    reused: list[str] = field(default_factory=list)  # maps read back (this request was answered before)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    pairs: list[str] = field(default_factory=list)  # KD runs whose agreement was measured
    seconds: float = 0.0


def read_explain(store: RunStore, run_id: str) -> dict:
    doc = read_json(store.run_dir(run_id) / EXPLAIN)
    return doc if isinstance(doc, dict) and isinstance(doc.get("entries"), dict) else {"version": VERSION,
                                                                                        "entries": {}}


def _save_entry(store: RunStore, run_id: str, slug: str, entry: dict) -> None:
    doc = read_explain(store, run_id)
    doc["entries"][slug] = entry
    write_json(store.run_dir(run_id) / EXPLAIN, doc)


def with_partners(store: RunStore, run_ids: list[str]) -> list[str]:
    """The runs to map: each run, and for a KD run its teachers and its baseline, teachers and baselines first."""
    out: dict[str, None] = {}
    students = []
    for rid in run_ids:
        spec = store.load_spec(rid)
        if spec.kind == "kd":
            for t in spec.teachers:
                out.setdefault(t.run_id)
            base = baseline_of(spec)
            if base is not None:
                out.setdefault(base.run_id)
            students.append(rid)
        else:
            out.setdefault(rid)
    for rid in students:
        out.setdefault(rid)
    return list(out)


def _npz(store: RunStore, run_id: str, slug: str):
    return store.run_dir(run_id) / "explain" / f"{slug}.npz"


def _thumb(image: np.ndarray) -> list:
    return M.to_grid(image).round().astype(int).tolist()


def _map_run(store: RunStore, rid: str, req: Request, images: np.ndarray, true: np.ndarray, rows: np.ndarray,
             names: list[str], class_names: list[str], device) -> dict:
    """Compute one run's maps on the images and store them (explain.json's entry and the npz)."""
    t0 = time.perf_counter()
    model, net, meta = load_for_maps(store.checkpoint_dir(rid), device)
    layer_name, layer, reduction = target_layer(net)
    probs = predict(model, images, device)
    preds = probs.argmax(1)
    targets = true if req.target == "true" else preds
    maps = compute_maps(model, layer, images, [int(t) for t in targets], req.method, device)
    with atomic_path(_npz(store, rid, req.slug)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, maps=maps.astype(np.float16), images=images, preds=preds, probs=probs,
                                rows=rows, true=true)
    size = images.shape[-1]
    cells = int(-(-size // reduction))
    border = cells >= M.MIN_BORDER_CELLS
    entry = {
        "key": req.key(), "data": store.load_spec(rid).data.source, "image_size": int(size), "layer": layer_name,
        "cells": cells, "class_names": class_names, "grid": M.GRID,
        "border": {"share": M.BORDER, "area": M.border_area(), "measured": border,
                   "min_cells": M.MIN_BORDER_CELLS},
        "seconds": round(time.perf_counter() - t0, 3),
        "images": [{"row": int(r), "name": names[i], "true": int(true[i]), "target": int(targets[i]),
                    "pred": int(preds[i]), "prob": round(float(probs[i, preds[i]]), 4),
                    "border_mass": _round(M.border_mass(M.to_grid(maps[i]))) if border else None,
                    "grid": M.to_grid(maps[i]).round(3).tolist(), "thumb": _thumb(images[i])}
                   for i, r in enumerate(rows)],
    }
    _save_entry(store, rid, req.slug, entry)
    return entry


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _agreement(teacher_grids: list[np.ndarray], other: np.ndarray) -> tuple[float | None, float | None]:
    """(Spearman, top-20% IoU) of one image's map against its teachers' (their mean for several teachers)."""
    t = np.mean(teacher_grids, axis=0)
    return M.spearman(t, other), M.top_iou(t, other)


def _pair(store: RunStore, rid: str, req: Request, entries: dict[str, dict], maps: dict[str, tuple],
          fresh: bool) -> bool:
    """A KD run's agreement with its teachers beside its baseline's, per image, and its gallery; False when it
    has no teacher network or its partners were not mapped. ``fresh``: some map of the pair was computed now."""
    spec = store.load_spec(rid)
    png = store.run_dir(rid) / "explain" / f"{req.slug}.png"
    if not fresh and entries[rid].get("agreement") and png.is_file():
        return True  # asked before, every map read back: nothing changes
    teachers = [t.run_id for t in spec.teachers if t.run_id in entries]
    if not teachers or len(teachers) < len(spec.teachers):
        return False
    base = baseline_of(spec)
    base_id = base.run_id if base is not None and base.run_id in entries else None
    grid = lambda run, i: np.asarray(entries[run]["images"][i]["grid"])  # noqa: E731
    n = len(entries[rid]["images"])
    ts = [_agreement([grid(t, i) for t in teachers], grid(rid, i)) for i in range(n)]
    tb = [_agreement([grid(t, i) for t in teachers], grid(base_id, i)) for i in range(n)] if base_id else []
    entry = dict(entries[rid])
    entry["agreement"] = {
        "teachers": teachers, "baseline": base_id, "top_share": M.TOP_SHARE,
        "teacher_student": {"spearman": [_round(a) for a, _ in ts], "top_iou": [_round(b) for _, b in ts]},
        "teacher_baseline": {"spearman": [_round(a) for a, _ in tb], "top_iou": [_round(b) for _, b in tb]}
        if base_id else None,
    }
    _save_entry(store, rid, req.slug, entry)
    entries[rid] = entry
    images, true = maps[rid][2], maps[rid][3]
    columns = [(f"teacher {store.load_spec(t).model}", *maps[t][:2]) for t in teachers]
    columns += [("baseline", *maps[base_id][:2])] if base_id else []
    columns.append(("student", *maps[rid][:2]))
    title = (f"{spec.describe()}, seed {spec.seed}: {req.method} ({req.target} class)"
             + (f" under {req.shift}" if req.shift else ""))
    F.save_png(F.explain_figure(images, columns, true, entries[rid]["class_names"], title), png)
    return True


def explain(store: RunStore, run_ids: list[str], req: Request, device, force: bool = False,
            log=print) -> Outcome:
    """Maps for ``run_ids`` (and a KD run's teachers and baseline) on the request's images; agreement and a
    gallery for every KD run among them."""
    t0 = time.perf_counter()
    cam_class(req.method)  # grad-cam is there (else one line naming the extra) before any data is read
    out = Outcome()
    every = with_partners(store, run_ids)
    ready = []
    for rid in every:
        if not store.exists(rid):
            out.skipped.append((rid, "not in the store"))
        elif store.read_status(rid)["state"] != FINISHED:
            out.skipped.append((rid, f"{store.read_status(rid)['state']}, not finished"))
        else:
            ready.append(rid)
    if not ready:
        raise UsageError("nothing to explain: " + "; ".join(f"{rid} is {why}" for rid, why in out.skipped[:3])
                         + " (explain maps finished runs)")
    groups: dict = {}
    for rid in ready:
        groups.setdefault(store.load_spec(rid).data, []).append(rid)
    for data, rids in groups.items():
        source = open_source(data)
        cache = build_or_load(source, data.image_size, skip_bad=data.skip_bad)
        split_rows = cache.rows(req.split)
        rows = M.balanced_rows(split_rows, cache.labels[split_rows], req.images, req.seed)
        if len(rows) < req.images:
            log(f"note: the {req.split} split holds {len(rows)} images; explaining those")
        images, true = np.asarray(cache.images[rows]), cache.labels[rows]
        if req.shift:
            images = apply_shift(images, *req.shift_cell(), seed=req.seed, rows=rows)
        refs = source.all_refs()
        names = [source.ref_name(refs[r]) for r in rows]
        entries: dict[str, dict] = {}
        maps: dict[str, tuple] = {}
        for rid in rids:
            entry = read_explain(store, rid)["entries"].get(req.slug)
            path = _npz(store, rid, req.slug)
            if entry is not None and path.is_file() and not force and [i["row"] for i in entry["images"]] == \
                    rows.tolist():
                with np.load(path) as z:
                    maps[rid] = (z["maps"].astype(np.float32), z["preds"], z["images"], z["true"])
                out.reused.append(rid)
            else:
                entry = _map_run(store, rid, req, images, true, rows, names, source.class_names, device)
                with np.load(_npz(store, rid, req.slug)) as z:
                    maps[rid] = (z["maps"].astype(np.float32), z["preds"], z["images"], z["true"])
                out.explained.append(rid)
                log(f"{rid}: {len(rows)} images, {req.method} at {entry['layer']} ({entry['cells']}x{entry['cells']} "
                    f"cells), {entry['seconds']:.1f} s")
                if entry["cells"] < 2:
                    log(f"warning: at {entry['image_size']} px the map of {entry['layer']} is one cell: it cannot say "
                        "where the model looks (train at 64 px or more)")
            entries[rid] = entry
        for rid in rids:
            spec = store.load_spec(rid)
            if spec.kind == "kd":
                partners = [rid, *(t.run_id for t in spec.teachers), *([b.run_id] if (b := baseline_of(spec)) else [])]
                if _pair(store, rid, req, entries, maps, force or any(p in out.explained for p in partners)):
                    out.pairs.append(rid)
                else:
                    out.skipped.append((rid, "no teacher network to compare with (or its teacher is not finished)"))
    out.seconds = round(time.perf_counter() - t0, 2)
    return out
