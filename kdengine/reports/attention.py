"""The attention table: does a KD student look where its teacher does, more than its own baseline does? Read from
each KD run's ``explain.json`` (``kdengine explain``), no torch.

A row per kind of map (method, class, clean or shifted images), strategy, teacher and student: the teacher-student
agreement of the maps (Spearman's rho of their grid cells, IoU of their top-20% cells) beside the teacher-baseline
agreement on the same images, and the gain (KD minus baseline) paired by image and seed; and each model's share of
attention in the image's border band, a shortcut indicator.
"""
from __future__ import annotations

from collections import defaultdict

from .collect import RunRecord
from .groups import settings_groups
from .stats import summarize
from .table import Table

MEASURES = (("spearman", "ρ", (-1.0, 1.0)), ("top_iou", "IoU", (0.0, 1.0)))


def maps_label(key: dict) -> str:
    """'gradcam, true class' (and ', under blur:3'): what kind of maps a row compares."""
    return f"{key.get('method')}, {key.get('target')} class" + (f", under {key['shift']}" if key.get("shift") else "")


def _border(r: RunRecord | None, slug: str) -> list[float]:
    entry = ((r.explain or {}).get("entries") or {}).get(slug) if r is not None else None
    return [i["border_mass"] for i in (entry or {}).get("images", []) if i.get("border_mass") is not None]


def attention_table(records: list[RunRecord]) -> Table | None:
    by_id = {r.run_id: r for r in records}
    students = [r for r in records if r.kind == "kd" and r.finished and r.explain]
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    groups, notes = settings_groups(students)
    area, unmeasured = None, 0
    for r in students:
        for slug, entry in r.explain["entries"].items():
            agree = entry.get("agreement")
            if not agree or not agree.get("teacher_baseline"):
                continue
            area = (entry.get("border") or {}).get("area", area)
            if (entry.get("border") or {}).get("measured") is False:
                unmeasured = entry["border"].get("min_cells", 3)
            key = (maps_label(entry.get("key", {})), groups.get(r.run_id, ""), r.strategy, r.teacher_label, r.model)
            c = cells[key]
            for name, _, _ in MEASURES:
                ts, tb = agree["teacher_student"][name], agree["teacher_baseline"][name]
                c[f"ts {name}"] += [v for v in ts if v is not None]
                c[f"tb {name}"] += [v for v in tb if v is not None]
                c[f"gain {name}"] += [a - b for a, b in zip(ts, tb) if a is not None and b is not None]
            c["border student"] += _border(r, slug)
            c["border baseline"] += _border(by_id.get(agree.get("baseline")), slug)
            c["seeds"].append(r.seed)
    if not cells:
        return None
    grouped = any(groups.values())
    columns = ["maps", *(["settings"] if grouped else []), "strategy", "teacher", "student"]
    for _, sign, _ in MEASURES:
        columns += [f"{sign} teacher–student", f"{sign} teacher–baseline", f"gain {sign}"]
    columns += ["border student", "border baseline", "seeds"]
    table = Table("attention", "Where the models look: agreement of class activation maps with the teacher's, of "
                  "the KD student and of its baseline on the same images, and the gain (student minus baseline, "
                  "paired by image and seed; mean ± std [95% CI])", columns, notes=list(notes),
                  text=("maps", "strategy", "seeds"))
    for (maps, group, strategy, teacher, student), c in sorted(cells.items()):
        row = [maps, *([group] if grouped else []), strategy, teacher, student]
        for name, _, bounds in MEASURES:
            width = bounds[1] - bounds[0]
            row += [summarize(c[f"ts {name}"], bounds=bounds), summarize(c[f"tb {name}"], bounds=bounds),
                    summarize(c[f"gain {name}"], bounds=(-width, width))]
        row += [summarize(c["border student"], bounds=(0.0, 1.0)), summarize(c["border baseline"], bounds=(0.0, 1.0)),
                str(len(set(c["seeds"])))]
        table.rows.append(row)
    table.notes += [
        "ρ: Spearman's rank correlation of two maps' cells; IoU: overlap of their top-20% cells. The maps are "
        "grad-cam's at each model's last convolutional stage, compared on a 32 x 32 grid; a teacher's map is its "
        "own (several teachers: their mean).",
        "* the gain's 95% interval excludes zero. It is a t-interval over (image, seed) pairs: every seed sees the "
        "same images, so it speaks of image-to-image as much as of seed-to-seed variation.",
        f"border: the map's share in the band of 10% of each side (a uniform map puts {area or 0.36:.2f} there); "
        "more means attention on the image's edge: markers, burned-in text, the collimator.",
    ]
    if unmeasured:
        table.notes.append(f"border –: maps of fewer than {unmeasured} x {unmeasured} cells (a small image at a stride-32 stage, "
                           "48 px: 2 x 2) are interpolated bilinearly, and a bilinear map puts exactly the band's "
                           "area share in it, whatever it looks at: no shortcut can be read from them.")
    return table
