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
from ..runspec import RunSpec, baseline_of
from ..store import RunStore
from ..store.lifecycle import FINISHED
from ..store.runstore import EXPLAIN, read_json
from . import measures as M
from .cam import cam_class, compute_maps, faithfulness, load_for_maps, predict, reinitialised, target_layer
from .request import VERSION, Request

GALLERY = 8  # images a gallery shows (the first of the request's: balanced over the classes)


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


@dataclass
class Images:
    """The images of one data configuration that every model of it is explained on."""
    source: str  # the data source, as the runs' specs name it
    rows: np.ndarray  # in the decoded cache
    images: np.ndarray  # (N, H, W) uint8 (N, H, W, 3 in colour), shifted when the request says so
    true: np.ndarray  # the labels: a class each, or for a multi-label task 0/1 (-1 unknown) per finding
    names: list[str]
    class_names: list[str]
    thumbs: list  # each image on the grid, for readers without numpy (the TUI)
    target: np.ndarray | None = None  # the class each "true" map answers for (a multi-label image: one finding)

    @property
    def multilabel(self) -> bool:
        return self.true.ndim == 2


def true_targets(labels: np.ndarray) -> np.ndarray:
    """The class a "true" map answers for: the label itself, or for a multi-label image its first present finding
    (an image with none: the finding most images of the split have). Every model of the data answers for the same
    one, so that their maps compare (grad-cam per class: each finding's map is its logit's)."""
    if labels.ndim == 1:
        return labels.astype(np.int64)
    commonest = int(np.argmax((labels == 1).sum(0)))
    return np.array([int(np.flatnonzero(row == 1)[0]) if (row == 1).any() else commonest for row in labels])


def _load(store: RunStore, rid: str, slug: str) -> tuple[np.ndarray, np.ndarray]:
    """(maps, predictions) stored by an earlier request."""
    with np.load(_npz(store, rid, slug)) as z:
        return z["maps"].astype(np.float32), z["preds"]


def _map_run(store: RunStore, rid: str, req: Request, imgs: Images, device) -> tuple[dict, np.ndarray, np.ndarray]:
    """Compute one run's maps on the images and store them (explain.json's entry and the npz); (entry, maps,
    predictions)."""
    t0 = time.perf_counter()
    model, net, meta = load_for_maps(store.checkpoint_dir(rid), device)
    size = imgs.images.shape[-1]
    layer_name, layer, reduction = target_layer(net, size)
    probs = predict(model, imgs.images, device, multilabel=imgs.multilabel)
    preds = probs.argmax(1)  # a multi-label model's most probable finding
    targets = [int(t) for t in (imgs.target if req.target == "true" else preds)]
    maps = compute_maps(model, layer, imgs.images, targets, req.method, device)
    most, least = faithfulness(model, imgs.images, maps, targets, device)
    cells = int(-(-size // reduction))
    # ROAD's chance level: the same measure for a random map of each image (not zero: -1.38 on a toy model)
    chance_most, chance_least = faithfulness(model, imgs.images, M.random_maps(len(imgs.rows), cells, size, req.seed,
                                                                               imgs.rows), targets, device)
    random_model, random_net = reinitialised(meta, req.seed)
    random_model.to(device)
    random_maps = compute_maps(random_model, random_net.get_submodule(layer_name), imgs.images, targets,
                               req.method, device)
    with atomic_path(_npz(store, rid, req.slug)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, maps=maps.astype(np.float16), images=imgs.images, preds=preds, probs=probs,
                                rows=imgs.rows, true=imgs.true)
    border = cells >= M.MIN_BORDER_CELLS
    grids = [M.to_grid(m) for m in maps]
    random_grids = [M.to_grid(m) for m in random_maps]
    entry = {
        "key": req.key(), "data": imgs.source, "image_size": int(size), "layer": layer_name,
        "reduction": reduction, "cells": cells, "class_names": imgs.class_names, "grid": M.GRID,
        "agreement_measured": cells >= M.MIN_AGREEMENT_CELLS, "min_agreement_cells": M.MIN_AGREEMENT_CELLS,
        "border": {"share": M.BORDER, "area": M.border_area(), "measured": border,
                   "min_cells": M.MIN_BORDER_CELLS},
        "faithfulness": {"method": "ROAD (grad-cam), 20% of the pixels removed either way, beside a random map's",
                         "sanity": "re-initialised weights"},
        "seconds": round(time.perf_counter() - t0, 3),
        "images": [{"row": int(r), "name": imgs.names[i],
                    "true": imgs.true[i].tolist() if imgs.multilabel else int(imgs.true[i]), "target": int(targets[i]),
                    "pred": int(preds[i]), "prob": round(float(probs[i, preds[i]]), 4),
                    "border_mass": _round(M.border_mass(grids[i])) if border else None,
                    "flat": M.is_flat(grids[i]),
                    # ROAD: the target's score change removing the most / least relevant pixels first
                    "road_most": _round(most[i]), "road_least": _round(least[i]),
                    "road_random_most": _round(chance_most[i]), "road_random_least": _round(chance_least[i]),
                    # the sanity check: this map against the map of the same architecture re-initialised
                    "sanity_spearman": _round(M.spearman(grids[i], random_grids[i])),
                    "grid": grids[i].round(3).tolist(), "thumb": imgs.thumbs[i]}
                   for i, r in enumerate(imgs.rows)],
    }
    _save_entry(store, rid, req.slug, entry)
    return entry, maps, preds


def _images(data, req: Request, log) -> Images:
    """The request's images of one data configuration: N of the split, balanced and fixed by the seed."""
    source = open_source(data)
    cache = build_or_load(source, data.image_size, skip_bad=data.skip_bad)
    split_rows = cache.rows(req.split)
    rows = M.balanced_rows(split_rows, true_targets(cache.labels[split_rows]), req.images, req.seed)
    if len(rows) < req.images:
        log(f"note: the {req.split} split holds {len(rows)} images; explaining those")
    images = np.asarray(cache.images[rows])
    if req.shift:
        images = apply_shift(images, *req.shift_cell(), seed=req.seed, rows=rows)
    refs = source.all_refs()
    labels = cache.labels[rows]
    grey = images.mean(-1) if images.ndim == 4 else images  # the thumbnails are grey
    return Images(data.source, rows, images, labels, [source.ref_name(refs[r]) for r in rows], source.class_names,
                  [M.to_grid(im).round().astype(int).tolist() for im in grey], true_targets(labels))


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _agreement(teacher_grids: list[np.ndarray], other: np.ndarray) -> tuple[float | None, float | None]:
    """(Spearman, top-20% IoU) of one image's map against its teachers' (their mean for several teachers)."""
    t = np.mean(teacher_grids, axis=0)
    return M.spearman(t, other), M.top_iou(t, other)


def _pair(store: RunStore, spec: RunSpec, req: Request, imgs: Images, entries: dict[str, dict],
          maps: dict[str, tuple], fresh: bool) -> bool:
    """A KD run's agreement with its teachers beside its baseline's, per image, and its gallery; False when it
    has no teacher network or its partners were not mapped. ``fresh``: some map of the pair was computed now."""
    rid = spec.run_id
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
    # the chance level on these very maps: the teacher's map of each image against the student's of every other (the
    # table averages the pairs among the images it keeps)
    rho, iou = M.agreement_matrix(np.stack([np.mean([grid(t, i) for t in teachers], axis=0) for i in range(n)]),
                                  np.stack([grid(rid, i) for i in range(n)]))
    entry = dict(entries[rid])
    as_lists = lambda pairs: {"spearman": [_round(a) for a, _ in pairs], "top_iou": [_round(b) for _, b in pairs]}  # noqa: E731
    entry["agreement"] = {
        "teachers": teachers, "baseline": base_id, "top_share": M.TOP_SHARE,
        "teacher_student": as_lists(ts), "teacher_baseline": as_lists(tb) if base_id else None,
        "chance_matrix": {"spearman": rho, "top_iou": iou},
    }
    _save_entry(store, rid, req.slug, entry)
    entries[rid] = entry
    models = {t.run_id: t.model for t in spec.teachers}
    g = GALLERY
    columns = [(f"teacher {models[t]}", maps[t][0][:g], maps[t][1][:g]) for t in teachers]
    columns += [("baseline", maps[base_id][0][:g], maps[base_id][1][:g])] if base_id else []
    columns.append(("student", maps[rid][0][:g], maps[rid][1][:g]))
    title = (f"{spec.describe()}, seed {spec.seed}: {req.method} ({req.target} class)"
             + (f" under {req.shift}" if req.shift else ""))
    F.save_png(F.explain_figure(imgs.images[:g], columns, imgs.target[:g], imgs.class_names, title,
                                finding=imgs.multilabel), png)
    return True


def explain(store: RunStore, run_ids: list[str], req: Request, device, force: bool = False,
            log=print) -> Outcome:
    """Maps for ``run_ids`` (and a KD run's teachers and baseline) on the request's images; agreement and a
    gallery for every KD run among them."""
    t0 = time.perf_counter()
    cam_class(req.method)  # grad-cam is there (else one line naming the extra) before any data is read
    out = Outcome()
    ready = []
    for rid in with_partners(store, run_ids):
        state = store.read_status(rid).state if store.exists(rid) else None
        if state == FINISHED:
            ready.append(rid)
        else:
            out.skipped.append((rid, f"{state}, not finished" if state else "not in the store"))
    if not ready:
        raise UsageError("nothing to explain: " + "; ".join(f"{rid} is {why}" for rid, why in out.skipped[:3])
                         + " (explain maps finished runs)")
    specs = {rid: store.load_spec(rid) for rid in ready}
    groups: dict = {}
    for rid in ready:
        groups.setdefault(specs[rid].data, []).append(rid)
    for data, rids in groups.items():
        imgs = _images(data, req, log)
        entries: dict[str, dict] = {}
        maps: dict[str, tuple] = {}  # run id -> (maps, predictions)
        for rid in rids:
            entry = read_explain(store, rid)["entries"].get(req.slug)
            if entry is not None and _npz(store, rid, req.slug).is_file() and not force and \
                    entry.get("key") == req.key() and [i["row"] for i in entry["images"]] == imgs.rows.tolist():
                maps[rid] = _load(store, rid, req.slug)
                out.reused.append(rid)
            else:
                entry, cams, preds = _map_run(store, rid, req, imgs, device)
                maps[rid] = (cams, preds)
                out.explained.append(rid)
                log(f"{rid}: {len(imgs.rows)} images, {req.method} at {entry['layer']} "
                    f"({entry['cells']}x{entry['cells']} cells), {entry['seconds']:.1f} s")
                if not entry["agreement_measured"]:
                    log(f"warning: at {entry['image_size']} px no stage of this model has {M.MIN_AGREEMENT_CELLS} x "
                        f"{M.MIN_AGREEMENT_CELLS} cells ({entry['layer']}: {entry['cells']} x {entry['cells']}): its "
                        "maps cannot be compared (train at 64 px or more)")
            entries[rid] = entry
        for rid in rids:
            spec = specs[rid]
            if spec.kind == "kd":
                partners = [rid, *(t.run_id for t in spec.teachers), *([b.run_id] if (b := baseline_of(spec)) else [])]
                if _pair(store, spec, req, imgs, entries, maps, force or any(p in out.explained for p in partners)):
                    out.pairs.append(rid)
                else:
                    out.skipped.append((rid, "no teacher network to compare with (or its teacher is not finished)"))
    out.seconds = round(time.perf_counter() - t0, 2)
    return out
