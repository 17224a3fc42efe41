"""The attention table: does a KD student look where its teacher does, more than its own baseline does? Read from
each KD run's ``explain.json`` (``kdengine explain``), no torch.

A row per kind of map (method, class, clean or shifted images), strategy, teacher and student:

- the teacher-student agreement of the maps (Spearman's rho of their grid cells, tie-aware IoU of their top-20%
  cells) beside the teacher-baseline agreement and the gain (KD minus baseline), all three on the **same** images
  for every seed: an image where any seed's map is flat is left out of all three, and each model's share of flat
  maps is its own column;
- beside each, the chance level on those same images: the teacher's map of one image against the student's map of
  another, averaged over every other image of the set;
- the interval over seeds **and** images, crossed (:func:`~.intervals.over_seeds`): every seed explains the same
  images (fixed by the request's seed), so the per-image agreement gains form a seeds x images table, and a new
  study would draw new seeds and new images. An interval over the seeds alone would hold only for the images
  explained (with image-specific agreement and no effect it marked 7-28% of tables);
- whether the maps are faithful to their model: grad-cam's ROAD (the score lost removing the 20% most relevant
  pixels, less that lost removing the 20% least relevant), less the same for a random map of the same image
  (ROAD's chance level is not zero: a random map scored -1.38 on a toy model), so > 0 means more faithful than
  chance; and the sanity check of re-initialised weights (rho of each map with the same architecture's map at
  random weights: near 1 means the map does not depend on what was learned);
- each model's share of attention in the image's border band, a shortcut indicator.

Below 5 x 5 native cells agreement is not reported (explain.measures.MIN_AGREEMENT_CELLS); the stage used is named.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..store.records import RunRecord
from .groups import Groups, study_groups
from .intervals import MEAN, OverImages, StatsOptions, over_seeds
from .stats import summarize
from .table_model import CELLS, Table

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
    """One model's means over its images: flat share, ROAD beyond a random map's, sanity rho, border share."""
    images = (entry or {}).get("images") or []
    if not images:
        return {}
    road = [(i["road_least"] - i["road_most"]) - (i["road_random_least"] - i["road_random_most"]) for i in images
            if all(i.get(k) is not None for k in ("road_least", "road_most", "road_random_least", "road_random_most"))]
    return {"flat": _mean([float(i.get("flat", False)) for i in images]),
            "road": _mean(road), "sanity": _mean([i.get("sanity_spearman") for i in images]),
            "border": _mean([i.get("border_mass") for i in images])}


def _defined(agree: dict) -> list[bool]:
    """Per image: every agreement of the student and of the baseline with the teacher is defined (no flat map)."""
    ts, tb = agree["teacher_student"], agree["teacher_baseline"]
    return [all(x[m][i] is not None for x in (ts, tb) for m in ("spearman", "top_iou"))
            for i in range(len(ts["spearman"]))]


def _chance(agree: dict, name: str, keep: list[int]) -> list[float | None]:
    """Per kept image i: the teacher's map of i against the student's maps of the other kept images, averaged
    (explain version 3 stores every pair); an older entry's one pairing (image i against i + 1) where not."""
    matrix = (agree.get("chance_matrix") or {}).get(name)
    if matrix:
        return [_mean([matrix[i][j] for j in keep if j != i]) for i in keep]
    old = (agree.get("chance") or {}).get(name) or []
    return [old[i] if i < len(old) else None for i in keep]


class _Cell:
    """One row's runs (one per seed) and their agreements, lined up on the images every seed has defined."""

    def __init__(self):
        self.runs: list[RunRecord] = []
        self.agree: dict[str, dict] = {}  # run id -> its agreement
        self.rows: dict[str, list] = {}  # run id -> its images' ids
        self.measured = False
        self._keep = None

    def keep(self) -> dict[str, list[int]]:
        """run id -> the indices of the images kept: defined for every seed, by image id."""
        if self._keep is None:
            self._keep = self._kept()
        return self._keep

    def _kept(self) -> dict[str, list[int]]:
        ok = None
        for r in self.runs:
            mine = {row for row, d in zip(self.rows[r.run_id], _defined(self.agree[r.run_id])) if d}
            ok = mine if ok is None else ok & mine
        ok = ok or set()
        return {r.run_id: [i for i, row in enumerate(self.rows[r.run_id]) if row in ok] for r in self.runs}

    def scores(self, what: str, name: str):
        """A MEAN declaration over the kept images: the per-image teacher–student ("ts") or teacher–baseline ("tb")
        agreement, their difference ("gain"), or the chance level ("chance")."""
        keep = self.keep()

        def scores(r: RunRecord, split: str):
            import numpy as np  # numpy: only where a table is built

            k = keep[r.run_id]
            if len(k) < 2:
                return None
            a = self.agree[r.run_id]
            ts = np.array([a["teacher_student"][name][i] for i in k], float)
            tb = np.array([a["teacher_baseline"][name][i] for i in k], float)
            values = {"ts": ts, "tb": tb, "gain": ts - tb}.get(what)
            if what == "chance":
                chance = _chance(a, name, k)
                if any(c is None for c in chance):
                    return None
                values = np.array(chance, float)
            return np.array([self.rows[r.run_id][i] for i in k]), values
        return OverImages(MEAN, scores=scores, missing="fewer than 2 images where every seed's maps are defined")

    def values(self, what: str, name: str) -> list[float | None]:
        how = self.scores(what, name)
        out = []
        for r in self.runs:
            got = how.scores(r, "test")
            out.append(float(got[1].mean()) if got is not None else None)
        return out


def attention_table(records: list[RunRecord], groups: Groups | None = None,
                    opts: StatsOptions = StatsOptions()) -> Table | None:
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.explain]
    groups = groups if groups is not None else study_groups(records)
    labels, notes = groups.of([r.run_id for r in students])
    cells, faithful, seen = _gather(students, by_id, labels)
    if not cells:
        return None
    grouped = any(labels.values())
    columns = ["maps", *(["settings"] if grouped else []), "strategy", "teacher", "student", "stage"]
    for _, sign, _ in MEASURES:
        columns += [f"{sign} teacher–student", f"{sign} teacher–baseline", f"gain {sign}", f"{sign} chance"]
    columns += [f"flat {m}" for m in MODELS] + [f"ROAD {m}" for m in MODELS] + [f"sanity ρ {m}" for m in MODELS]
    columns += ["border student", "border baseline", "seeds"]
    table = Table("attention", "Where the models look: agreement of class activation maps with the teacher's, of "
                  "the KD student and of its baseline on the same images, and the gain (student minus baseline; "
                  f"{CELLS}), beside the chance level; whether the maps are faithful (ROAD beyond a random map's, "
                  "re-initialised weights)", columns, notes=list(notes), text=("maps", "strategy", "stage", "seeds"))
    for key, c in sorted(cells.items()):
        table.rows.append(_row(key, c, faithful[key], grouped, opts))
    table.notes += _notes(seen)
    return table


@dataclass
class _Seen:
    """What the explained entries said about themselves, for the notes."""
    area: float | None = None  # the border band's share of a uniform map
    unmeasured: int = 0  # the fewest cells a border is measured at, where some maps had fewer
    small: set = field(default_factory=set)  # stages with too few cells for agreement
    old_road: bool = False  # maps made before explain version 3


def _gather(students: list[RunRecord], by_id: dict, labels: dict) -> tuple[dict, dict, _Seen]:
    """Each (maps, settings, strategy, teacher, student, stage) cell's runs and agreements, and its models'
    faithfulness measures per seed."""
    cells: dict[tuple, _Cell] = defaultdict(_Cell)
    faithful: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    seen = _Seen()
    for r in students:
        for slug, entry in r.explain["entries"].items():
            agree = entry.get("agreement")
            if not agree or not agree.get("teacher_baseline"):
                continue
            seen.area = (entry.get("border") or {}).get("area", seen.area)
            if (entry.get("border") or {}).get("measured") is False:
                seen.unmeasured = entry["border"].get("min_cells", 3)
            measured = entry.get("agreement_measured", entry.get("cells", 0) >= MIN_AGREEMENT_CELLS)
            stage = f"{entry.get('layer')} ({entry.get('cells')}x{entry.get('cells')})"
            if not measured:
                seen.small.add(stage)
            key = (maps_label(entry.get("key", {})), labels.get(r.run_id, ""), r.strategy, r.teacher_label, r.model,
                   stage)
            c = cells[key]
            c.runs.append(r)
            c.agree[r.run_id] = agree
            c.rows[r.run_id] = [i.get("row", n) for n, i in enumerate(entry.get("images") or [])]
            c.measured = measured
            partners = {"student": entry, "baseline": _entry(by_id.get(agree.get("baseline")), slug)}
            teachers = [_model_measures(_entry(by_id.get(t), slug)) for t in agree.get("teachers", [])]
            seen.old_road |= not (entry.get("key") or {}).get("version", 0) >= 3
            f = faithful[key]
            for model in MODELS:
                got = [_model_measures(partners[model])] if model != "teacher" else teachers
                for what in ("flat", "road", "sanity", "border"):
                    f[f"{what} {model}"].append(_mean([g.get(what) for g in got]))
    return cells, faithful, seen


def _row(key: tuple, c: _Cell, f: dict, grouped: bool, opts: StatsOptions) -> list:
    """One cell's row: the agreement columns with their intervals, then faithfulness and border."""
    maps, group, strategy, teacher, student, stage = key
    seeds = [r.seed for r in c.runs]
    units = [(r.seed, (r,)) for r in c.runs]
    ids = tuple(sorted(r.run_id for r in c.runs))
    row = [maps, *([group] if grouped else []), strategy, teacher, student, stage]
    for name, _, bounds in MEASURES:
        width = bounds[1] - bounds[0]
        if not c.measured:
            row += [None] * 4
            continue
        for what, bound, test in (("ts", bounds, False), ("tb", bounds, False), ("gain", (-width, width), True),
                                  ("chance", bounds, False)):
            values = c.values(what, name)
            if any(v is None for v in values):  # too few images every seed shares: each seed's own images
                values = [_seed_mean(c.agree[r.run_id], what, name) for r in c.runs]
            row.append(over_seeds(units, values, "test", c.scores(what, name), opts, bound, test,
                                  ("attention", maps, what, name, ids)) if None not in values else None)
    row += [summarize(f[f"flat {m}"], bounds=(0.0, 1.0), seeds=seeds) for m in MODELS]
    row += [summarize(f[f"road {m}"], seeds=seeds) for m in MODELS]
    row += [summarize(f[f"sanity {m}"], bounds=(-1.0, 1.0), seeds=seeds) for m in MODELS]
    row += [summarize(f["border student"], bounds=(0.0, 1.0), seeds=seeds),
            summarize(f["border baseline"], bounds=(0.0, 1.0), seeds=seeds), len(set(seeds))]
    return row


def _notes(seen: _Seen) -> list[str]:
    """What the table's columns mean, and what the entries said of themselves."""
    out = [
        "ρ: Spearman's rank correlation of two maps' cells; IoU: overlap of their top-20% cells (tie-aware: cells "
        "tied at the boundary share the last places, so the region is 20% of the map whatever the ties; a cell at "
        "the map's floor is never top, so maps that do not overlap score 0). Maps are grad-cam's at the deepest "
        f"stage with at least {MIN_AGREEMENT_CELLS} x {MIN_AGREEMENT_CELLS} cells (stage), compared on a 32 x 32 "
        "grid; a teacher's map is its own (several teachers: their mean). All three agreement columns and the "
        "chance level use the same images for every seed: an image where any seed's map is flat is left out of "
        "all; flat: each model's share of flat maps.",
        "chance: the teacher's map of each image against the student's maps of the other images of the same set "
        "(same models, same grid): agreement at that level says nothing about looking alike.",
        "Intervals over seeds and images, crossed: each seed explains the same images (n = seeds × images), so a "
        "new study, with new seeds and new images, is what they speak of.",
        "ROAD (Rong et al. 2022, grad-cam's metric): the target's score lost removing the 20% most relevant pixels "
        "less that lost removing the 20% least relevant, less the same for a random map of the image (ROAD's "
        "chance level); > 0: the map points at what the model uses, more than chance. sanity ρ (Adebayo et al. "
        "2018): each map against the same architecture's map with re-initialised weights; near 1: the map does not "
        "depend on what was learned, and its agreement means nothing.",
        f"border: the map's share in the band of 10% of each side (a uniform map puts {seen.area or 0.36:.2f} there); "
        "more means attention on the image's edge: markers, burned-in text, the collimator.",
    ]
    if seen.old_road:
        out.append("ROAD –: maps made before explain version 3, whose ROAD removed 80% of the pixels for "
                           "'least relevant' and had no chance level: kdengine explain again (--force) measures it.")
    if seen.small:
        out.append(f"agreement –: {', '.join(sorted(seen.small))}: fewer than {MIN_AGREEMENT_CELLS} x "
                           f"{MIN_AGREEMENT_CELLS} native cells, where random maps agree by chance as much as any "
                           "(ρ's SD is 0.56 at 2 x 2): not reported. Train at a larger size, or explain a model with "
                           "an earlier stage.")
    if seen.unmeasured:
        out.append(f"border –: maps of fewer than {seen.unmeasured} x {seen.unmeasured} cells (a small image at a "
                           "stride-32 stage, 48 px: 2 x 2) are interpolated bilinearly, and a bilinear map puts "
                           "exactly the band's area share in it, whatever it looks at: no shortcut can be read from "
                           "them.")
    return out


def _seed_mean(agree: dict, what: str, name: str) -> float | None:
    """One seed's mean over its own defined images (where the seeds share too few images to cross them)."""
    keep = [i for i, d in enumerate(_defined(agree)) if d]
    ts, tb = agree["teacher_student"][name], agree["teacher_baseline"][name]
    if what == "chance":
        return _mean(_chance(agree, name, keep))
    return _mean([{"ts": ts[i], "tb": tb[i], "gain": ts[i] - tb[i]}[what] for i in keep])
