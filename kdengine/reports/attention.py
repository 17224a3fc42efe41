"""The attention table: does a KD student look where its teacher does, more than its own baseline does? Read from
each KD run's ``explain.json`` (``kdengine explain``), no torch.

A row per kind of map (method, class, clean or shifted images), strategy, teacher and student:

- the teacher-student agreement of the maps (Spearman's rho of their grid cells, tie-aware IoU of their top-20%
  cells) beside the teacher-baseline agreement and the gain (KD minus baseline), all three on the **same**
  (image, seed) pairs: an image where any of the three maps is flat is left out of all three, and each model's
  share of flat maps is its own column;
- beside each, the chance level on the same maps: the teacher's map of one image against the student's map of
  another;
- the interval at seed level: each seed's mean over its images is one observation (the images are the same for
  every seed, so pooling (image, seed) pairs would count them as independent);
- whether the maps are faithful to their model: grad-cam's ROAD (the score lost removing the 20% most relevant
  pixels, less that lost removing the 20% least relevant: > 0 is faithful) and the sanity check of
  re-initialised weights (rho of each map with the same architecture's map at random weights: near 1 means the
  map does not depend on what was learned);
- each model's share of attention in the image's border band, a shortcut indicator.

Below 5 x 5 native cells agreement is not reported (explain.measures.MIN_AGREEMENT_CELLS); the stage used is named.
"""
from __future__ import annotations

from collections import defaultdict

from ..store.records import RunRecord
from .groups import settings_groups
from .intervals import tested
from .stats import summarize
from .table_model import Table

# Below this many native cells a side, agreement is not reported: for random 2 x 2 maps Spearman's rho has SD 0.56
# and the top-20% IoU a chance level of 0.205 (0.111 at 7 x 7): there is no room to agree or disagree. kdengine
# explain takes the maps at the deepest stage that has at least this many (explain.cam.target_layer).
MIN_AGREEMENT_CELLS = 5
MEASURES = (("spearman", "ρ", (-1.0, 1.0)), ("top_iou", "IoU", (0.0, 1.0)))
MODELS = ("student", "baseline", "teacher")


def maps_label(key: dict) -> str:
    """'gradcam, true class' (and ', under blur:3'): what kind of maps a row compares."""
    return f"{key.get('method')}, {key.get('target')} class" + (f", under {key['shift']}" if key.get("shift") else "")


def _entry(r: RunRecord | None, slug: str) -> dict | None:
    return ((r.explain or {}).get("entries") or {}).get(slug) if r is not None else None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _model_measures(entry: dict | None) -> dict[str, float | None]:
    """One model's means over its images: flat share, ROAD (least minus most relevant first), sanity rho, border."""
    images = (entry or {}).get("images") or []
    if not images:
        return {}
    road = [i["road_least"] - i["road_most"] for i in images
            if i.get("road_least") is not None and i.get("road_most") is not None]
    return {"flat": _mean([float(i.get("flat", False)) for i in images]),
            "road": _mean(road), "sanity": _mean([i.get("sanity_spearman") for i in images]),
            "border": _mean([i.get("border_mass") for i in images])}


def _seed_means(agree: dict) -> dict[str, float | None]:
    """A seed's agreement means over the images where every map is defined (the same images for all three
    columns), and the chance level's."""
    ts, tb = agree["teacher_student"], agree["teacher_baseline"]
    keep = [i for i in range(len(ts["spearman"]))
            if all(x[m][i] is not None for x in (ts, tb) for m in ("spearman", "top_iou"))]
    out: dict[str, float | None] = {"images": float(len(keep))}
    chance = agree.get("chance") or {}
    for name, _, _ in MEASURES:
        out[f"ts {name}"] = _mean([ts[name][i] for i in keep])
        out[f"tb {name}"] = _mean([tb[name][i] for i in keep])
        out[f"gain {name}"] = _mean([ts[name][i] - tb[name][i] for i in keep])
        out[f"chance {name}"] = _mean(chance.get(name) or [])
    return out


def attention_table(records: list[RunRecord]) -> Table | None:
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.explain]
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    groups, notes = settings_groups(students)
    area, unmeasured, small = None, 0, set()
    for r in students:
        for slug, entry in r.explain["entries"].items():
            agree = entry.get("agreement")
            if not agree or not agree.get("teacher_baseline"):
                continue
            area = (entry.get("border") or {}).get("area", area)
            if (entry.get("border") or {}).get("measured") is False:
                unmeasured = entry["border"].get("min_cells", 3)
            measured = entry.get("agreement_measured", entry.get("cells", 0) >= MIN_AGREEMENT_CELLS)
            stage = f"{entry.get('layer')} ({entry.get('cells')}x{entry.get('cells')})"
            if not measured:
                small.add(stage)
            key = (maps_label(entry.get("key", {})), groups.get(r.run_id, ""), r.strategy, r.teacher_label, r.model,
                   stage)
            c = cells[key]
            c["seeds"].append(r.seed)
            if measured:
                for k, v in _seed_means(agree).items():
                    c[k].append(v)
            partners = {"student": entry, "baseline": _entry(by_id.get(agree.get("baseline")), slug)}
            teachers = [_model_measures(_entry(by_id.get(t), slug)) for t in agree.get("teachers", [])]
            for model in MODELS:
                got = [_model_measures(partners[model])] if model != "teacher" else teachers
                for what in ("flat", "road", "sanity", "border"):
                    c[f"{what} {model}"].append(_mean([g.get(what) for g in got]))
    if not cells:
        return None
    grouped = any(groups.values())
    columns = ["maps", *(["settings"] if grouped else []), "strategy", "teacher", "student", "stage"]
    for _, sign, _ in MEASURES:
        columns += [f"{sign} teacher–student", f"{sign} teacher–baseline", f"gain {sign}", f"{sign} chance"]
    columns += [f"flat {m}" for m in MODELS] + [f"ROAD {m}" for m in MODELS] + [f"sanity ρ {m}" for m in MODELS]
    columns += ["border student", "border baseline", "seeds"]
    table = Table("attention", "Where the models look: agreement of class activation maps with the teacher's, of "
                  "the KD student and of its baseline on the same images, and the gain (student minus baseline; "
                  "each seed's mean over its images, mean ± std [95% CI] over seeds), beside the chance level; "
                  "whether the maps are faithful (ROAD, re-initialised weights)", columns, notes=list(notes),
                  text=("maps", "strategy", "stage", "seeds"))
    for (maps, group, strategy, teacher, student, stage), c in sorted(cells.items()):
        seeds = c["seeds"]
        row = [maps, *([group] if grouped else []), strategy, teacher, student, stage]
        for name, _, bounds in MEASURES:
            width = bounds[1] - bounds[0]
            if c.get(f"ts {name}"):
                row += [summarize(c[f"ts {name}"], bounds=bounds, seeds=seeds),
                        summarize(c[f"tb {name}"], bounds=bounds, seeds=seeds),
                        tested(summarize(c[f"gain {name}"], bounds=(-width, width), seeds=seeds, test=True)),
                        summarize(c[f"chance {name}"], bounds=bounds, seeds=seeds)]
            else:
                row += [None] * 4
        row += [summarize(c[f"flat {m}"], bounds=(0.0, 1.0), seeds=seeds) for m in MODELS]
        row += [summarize(c[f"road {m}"], seeds=seeds) for m in MODELS]
        row += [summarize(c[f"sanity {m}"], bounds=(-1.0, 1.0), seeds=seeds) for m in MODELS]
        row += [summarize(c["border student"], bounds=(0.0, 1.0), seeds=seeds),
                summarize(c["border baseline"], bounds=(0.0, 1.0), seeds=seeds), str(len(set(seeds)))]
        table.rows.append(row)
    table.notes += [
        "ρ: Spearman's rank correlation of two maps' cells; IoU: overlap of their top-20% cells (tie-aware: every "
        "cell tied at the boundary counts, a cell at the map's floor never does, so maps that do not overlap score "
        "0). Maps are grad-cam's at the deepest stage with at least "
        f"{MIN_AGREEMENT_CELLS} x {MIN_AGREEMENT_CELLS} cells (stage), compared on a 32 x 32 grid; a teacher's map is "
        "its own (several teachers: their mean). All three agreement columns use the same (image, seed) pairs: an "
        "image where any map is flat is left out of all three; flat: each model's share of flat maps.",
        "chance: the teacher's map of an image against the student's map of another image (same models, same "
        "grid): agreement at that level says nothing about looking alike.",
        "Intervals: each seed's mean over the images is one observation; t-interval over seeds (the images are "
        "the same for every seed). No interval with fewer than 2 seeds or none spread.",
        "ROAD (Rong et al. 2022, grad-cam's metric): the target's score lost removing the 20% most relevant pixels "
        "less that lost removing the 20% least relevant; > 0: the map points at what the model uses. sanity ρ "
        "(Adebayo et al. 2018): each map against the same architecture's map with re-initialised weights; near 1: "
        "the map does not depend on what was learned, and its agreement means nothing.",
        f"border: the map's share in the band of 10% of each side (a uniform map puts {area or 0.36:.2f} there); "
        "more means attention on the image's edge: markers, burned-in text, the collimator.",
    ]
    if small:
        table.notes.append(f"agreement –: {', '.join(sorted(small))}: fewer than {MIN_AGREEMENT_CELLS} x "
                           f"{MIN_AGREEMENT_CELLS} native cells, where random maps agree by chance as much as any "
                           "(ρ's SD is 0.56 at 2 x 2): not reported. Train at a larger size, or explain a model with "
                           "an earlier stage.")
    if unmeasured:
        table.notes.append(f"border –: maps of fewer than {unmeasured} x {unmeasured} cells (a small image at a stride-32 stage, "
                           "48 px: 2 x 2) are interpolated bilinearly, and a bilinear map puts exactly the band's "
                           "area share in it, whatever it looks at: no shortcut can be read from them.")
    return table

