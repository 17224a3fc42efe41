"""``kdengine report``: one self-contained HTML file (every figure embedded as a PNG data URI, no script, no
network) that opens offline in any browser: the tables, each student over its baseline and teacher, the
confusion matrices, and robustness against severity. No torch."""
from __future__ import annotations

import base64
import html
import time
from collections import defaultdict
from pathlib import Path

from ..atomic import write_text
from ..store import RunStore
from . import figures as F
from ..store.records import RunRecord
from .groups import natural_key
from .stats import Summary
from .latex import table_latex
from .table_model import METRICS, Tables, cell_detail, cell_text
from .tables import table_csv

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #111; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #999; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #bbb; padding: .25em .5em; text-align: right; }
th { background: #eee; } td.text { text-align: left; }
.note { color: #444; font-size: .85em; } figure { margin: 1em 0; page-break-inside: avoid; }
figcaption { font-size: .85em; color: #333; } img { max-width: 100%; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; } .grid figure { width: 31%; min-width: 300px; }
.grid.pairs figure { width: 48%; min-width: 420px; }
.wide { max-width: 100%; overflow-x: auto; }
@media print { .wide table { font-size: .7em; } }
@media print { body { max-width: none; } h2 { page-break-before: always; } }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, caption: str) -> str:
    return (f'<figure><img src="{data_uri(png)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def download(name: str, text: str, label: str, mime: str = "text/plain") -> str:
    """A link that saves ``text`` as ``name``: embedded as a data URI, so the report stays one file."""
    uri = f"data:{mime};charset=utf-8;base64," + base64.b64encode(text.encode()).decode("ascii")
    return f'<a download="{html.escape(name)}" href="{uri}">{html.escape(label)}</a>'


def _per_seed(t) -> str:
    """Each number cell's per-seed values (and its family, p and mark), under the table, folded: what a reader
    checks a cell against."""
    lines = [f"<li>{html.escape(' · '.join(str(row[k]) for k, c in enumerate(t.columns) if t.is_text(c) and row[k]))}"
             f" — {html.escape(cell_detail(c, v))}</li>"
             for row in t.rows for c, v in zip(t.columns, row) if isinstance(v, Summary) and v.per_seed]
    return f'<details><summary class="note">per-seed values of every cell</summary><ul class="note">{"".join(lines)}' \
           "</ul></details>" if lines else ""


def table_html(t, metric: str = "accuracy") -> str:
    links = (f'<p class="note">Download: {download(f"{t.name}.tex", table_latex(t, metric), "LaTeX (booktabs)", "application/x-tex")}'
             f' · {download(f"{t.name}.csv", table_csv(t), "CSV (long)", "text/csv")}</p>')
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    rows = []
    for row in t.rows:
        cells = "".join(f'<td class="{"text" if t.is_text(c) else "num"}"'
                        + (f' title="{html.escape(cell_detail(c, v))}"' if isinstance(v, Summary) else "") + ">"
                        f"{html.escape(cell_text(v, gain=c.startswith('gain')))}</td>" for c, v in zip(t.columns, row))
        rows.append(f"<tr>{cells}</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in t.notes)
    # a wide table (the robustness table's shifts) scrolls inside the page instead of widening it
    return (f'<h3>{html.escape(t.title)}</h3><div class="wide"><table><tr>{head}</tr>{"".join(rows)}</table></div>'
            f"{notes}{_per_seed(t)}{links}")


def _run_png(store: RunStore, r: RunRecord, name: str) -> bytes:
    """A run's own figure, drawn again when it is missing (runs trained before figures existed)."""
    path = store.run_dir(r.run_id) / "figures" / name
    if not path.is_file():
        F.write_run_figures(store.run_dir(r.run_id), store.events(r.run_id), r.metrics, r.spec.describe())
    return path.read_bytes()


def _at(points: dict[str, str], run_id: str) -> str:
    """``, T=4``: a run's point (or settings group) in a title; nothing where there is none."""
    return f", {points[run_id]}" if points.get(run_id) else ""


def student_section(store: RunStore, records: list[RunRecord], points: dict[str, str] | None = None) -> str:
    by_id, points = {r.run_id: r for r in records}, points or {}
    out = []
    for r in sorted((r for r in records if r.kind == "kd" and r.finished),
                    key=lambda r: (r.strategy, r.model, natural_key(points.get(r.run_id, "")), r.seed)):
        series = [(f"student {r.model}", store.events(r.run_id))]
        base = by_id.get(r.baseline_id)
        if base is not None and base.finished:
            series.append((f"baseline {base.model}", store.events(base.run_id)))
        for tid in r.teacher_ids:
            if tid in by_id:
                t = by_id[tid]
                series.append((f"teacher {t.model}" + (" (defective)" if t.regime == "defective" else ""),
                               store.events(tid)))
        title = f"{r.strategy}: {r.teacher_label} → {r.model}{_at(points, r.run_id)}, seed {r.seed}"
        shown = ["the student"] + (["its baseline (trained alone, same settings and seed)"]
                                   if base is not None and base.finished else [])
        teachers = sum(tid in by_id for tid in r.teacher_ids)
        shown += ["its teacher"] if teachers == 1 else ["its teachers"] if teachers else []
        whom = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        out.append(img(F.png_bytes(F.overlay_figure(series, title)), f"{title} — val accuracy and loss of {whom}"
                       + ("; it learns from no teacher network" if not r.teacher_ids else "")))
    return "".join(out) or '<p class="note">No finished KD run yet.</p>'


def confusion_section(store: RunStore, records: list[RunRecord], points: dict[str, str] | None = None) -> str:
    points = points or {}
    figs = [img(_run_png(store, r, "confusion.png"),
                f"{r.spec.describe()}{_at(points, r.run_id)}, seed {r.seed}: test confusion matrix"
                + (" per finding" if isinstance(r.metrics.get("test", {}).get("confusion"), dict) else ""))
            for r in sorted((r for r in records if r.finished),
                            key=lambda r: (r.kind, r.model, natural_key(points.get(r.run_id, "")), r.seed))]
    # two to a row (CONFUSION_DISPLAY_PX wide each), where the figure's type keeps its size: three to a row drew
    # the counts at a third of theirs
    return f'<div class="grid pairs">{"".join(figs)}</div>'


def robustness_section(records: list[RunRecord], points: dict[str, str] | None = None) -> str:
    """For each KD student (at each sweep point, or settings group) against its baseline: accuracy against
    severity, per shift, mean over seeds (a seed's baseline counted once, whatever the points it serves)."""
    by_id, points = {r.run_id: r for r in records}, points or {}
    pairs: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.kind != "kd" or not (r.finished and r.shift):
            continue
        base = by_id.get(r.baseline_id)
        key = (r.strategy, r.teacher_label, r.model, points.get(r.run_id, ""))
        pairs[key][f"student ({r.strategy})"][r.run_id] = r.shift
        if base is not None and base.shift:
            pairs[key]["baseline"][base.run_id] = base.shift
    out = []
    for (strategy, teacher, model, point), by_run in sorted(pairs.items(),
                                                            key=lambda kv: (*kv[0][:3], natural_key(kv[0][3]))):
        by_label = {label: list(runs.values()) for label, runs in by_run.items()}
        curves: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)
        for label, results in by_label.items():
            for name in results[0]["cells"]:
                sev = sorted(int(s) for s in results[0]["cells"][name])
                mean_at = [sum(r["clean"]["accuracy"] for r in results) / len(results)]
                mean_at += [sum(r["cells"][name][str(s)]["accuracy"] for r in results) / len(results) for s in sev]
                curves[name][f"{label}, n={len(results)}"] = ([0, *sev], mean_at)
        title = f"{strategy}: {teacher} → {model}" + (f", {point}" if point else "") + " under acquisition shift"
        out.append(img(F.png_bytes(F.robustness_figure(curves, title)),
                       f"{title}: test accuracy against severity (0 is clean), mean over seeds"))
    return "".join(out) or '<p class="note">No run has been evaluated under shift yet: kdengine shift STUDY.</p>'


GALLERY = 8  # images a gallery shows (the first of the request's, balanced over the classes)


def _gallery(store: RunStore, r: RunRecord, slug: str, entry: dict, point: str) -> bytes | None:
    """A KD pair's gallery with its sweep point in the title, drawn from the maps kept by explain (the stored
    picture's title names the run, not the point); None where a partner's maps are gone."""
    import numpy as np  # numpy: only where a gallery is drawn again

    agree = entry["agreement"]
    partners = [(f"teacher {i + 1}" if len(agree["teachers"]) > 1 else "teacher", t)
                for i, t in enumerate(agree["teachers"])]
    partners += [("baseline", agree["baseline"])] if agree.get("baseline") else []
    columns, first = [], None
    for label, rid in [*partners, ("student", r.run_id)]:
        path = store.run_dir(rid) / "explain" / f"{slug}.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            columns.append((label, z["maps"][:GALLERY].astype(np.float32), z["preds"][:GALLERY]))
            first = first or (z["images"][:GALLERY], z["true"][:GALLERY])
    key = entry.get("key", {})
    title = (f"{r.spec.describe()}, {point}, seed {r.seed}: {key.get('method')} ({key.get('target')} class)"
             + (f" under {key['shift']}" if key.get("shift") else ""))
    true = first[1]
    if true.ndim == 2:  # a multi-label task: the finding each map answers for (as the run's gallery)
        true = np.array([i["target"] for i in entry["images"][:GALLERY]])
    return F.png_bytes(F.explain_figure(first[0], columns, true, entry.get("class_names") or [], title,
                                        finding=first[1].ndim == 2))


def gallery_section(store: RunStore, records: list[RunRecord], points: dict[str, str] | None = None) -> str:
    """Each KD pair's gallery from ``kdengine explain`` (its lowest seed; every run's is in <run>/explain/): a row
    per image, a column per model, with the class each predicted and whether it was right; a sweep's point in its
    title and caption."""
    shown: set[tuple] = set()
    points = points or {}
    out = []
    for r in sorted((r for r in records if r.kind == "kd" and r.finished and r.explain),
                    key=lambda r: (r.strategy, r.teacher_label, r.model, natural_key(points.get(r.run_id, "")),
                                   r.seed)):
        for slug, entry in r.explain["entries"].items():
            png = store.run_dir(r.run_id) / "explain" / f"{slug}.png"
            point = points.get(r.run_id, "")
            pair = (r.strategy, r.teacher_label, r.model, point, slug)
            if pair in shown or not entry.get("agreement") or not png.is_file():
                continue
            shown.add(pair)
            key = entry.get("key", {})
            picture = (_gallery(store, r, slug, entry, point) if point else None) or png.read_bytes()
            out.append(img(picture, f"{r.strategy}: {r.teacher_label} → {r.model}{_at(points, r.run_id)}, "
                           f"seed {r.seed}: "
                           f"{key.get('method')} maps for the {key.get('target')} class on "
                           + (f"{GALLERY} of " if len(entry["images"]) > GALLERY else "")
                           + f"{len(entry['images'])} {key.get('split')} images"
                           + (f" under {key['shift']}" if key.get("shift") else "")
                           + f" (at {entry.get('layer')}, {entry.get('cells')} x {entry.get('cells')} cells)"))
    return "".join(out)


def sweep_section(tables: Tables) -> str:
    """A swept study: the gain against each axis, with interval bands and the value chosen on val."""
    label = METRICS[tables.metric][0]
    return "".join(img(F.png_bytes(F.sweep_figure(s, label)),
                       f"Test {label} gain over the baseline against {s.label} ({s.key}), mean over seeds with its 95% "
                       "interval; the ring marks the value chosen on validation") for s in tables.sweeps if s.rows)


def write_report(store: RunStore, tables: Tables, records: list[RunRecord], out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    # the tables' own records: each run's results under the shift request the tables read
    chosen = {r.run_id: r for r in tables.records}
    readable = [chosen.get(r.run_id, r) for r in records if r.spec is not None]
    parts = [f"<h1>{html.escape(tables.title)}</h1>",
             f'<p class="note">{tables.finished} of {tables.planned} runs finished · metric: '
             f"{METRICS[tables.metric][0]} · written {time.strftime('%Y-%m-%d %H:%M')} by kdstudy"
             + (" · <b>SYNTHETIC data: generated images, not real radiographs</b>" if tables.synthetic else "")
             + "</p>",
             "<h2>Tables</h2>", *[table_html(t, tables.metric) for t in tables.tables],
             *(["<h2>Sweeps</h2>", sweep_section(tables)] if tables.sweeps else []),
             "<h2>Students, their baselines and teachers</h2>", student_section(store, readable, tables.points),
             *(["<h2>Where the models look</h2>", gallery] if (gallery := gallery_section(store, readable, tables.points)) else []),
             "<h2>Robustness under acquisition shift</h2>", robustness_section(readable, tables.points),
             "<h2>Confusion matrices</h2>", confusion_section(store, readable, tables.points)]
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(tables.title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    path = out_dir / "report.html"
    write_text(path, page)
    return path
