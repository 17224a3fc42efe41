"""The report says what it shows (issue 38's confusing spots, issue 35 item 11): a tf-reg student's curves have no
teacher to name, a gallery's title names its sweep point, and every table's per-seed values are in the report."""
from __future__ import annotations

import numpy as np

from kdengine.data.config import DataConfig
from kdengine.reports import figures as F
from kdengine.reports import html
from kdengine.reports.tables import build
from kdengine.runspec import KDConfig, TrainConfig, build_specs
from kdengine.store import RunStore
from kdengine.store.lifecycle import FINISHED
from kdengine.store.records import RunRecord
from kdengine.store.status import RunStatus
from tests import stats_sim as sim

DATA, TRAIN = DataConfig(source="synthetic", image_size=32), TrainConfig(epochs=1)


def _done(spec, explain=None) -> RunRecord:
    return RunRecord(spec.run_id, spec, RunStatus(FINISHED), {"teachers": [], "test": {"accuracy": 0.5}},
                     explain=explain, preds={})


def test_a_tf_reg_students_curves_name_no_teacher(tmp_path, monkeypatch):
    """tf-reg's caption said "and its teacher": it has none."""
    monkeypatch.setattr(F, "overlay_figure", lambda series, title: None)
    monkeypatch.setattr(F, "png_bytes", lambda fig: b"png")
    tf = build_specs("tf-reg", "test_resnet", [], DATA, TRAIN, KDConfig(), 0)
    base = build_specs("baseline", "test_resnet", [], DATA, TRAIN, KDConfig(), 0)
    normal = build_specs("normal", "test_resnet", ["resnet18"], DATA, TRAIN, KDConfig(), 0)
    records = [_done(s) for s in (tf, base, normal, normal.teachers[0])]
    page = html.student_section(RunStore(tmp_path / "runs"), records)
    tf_caption = page[page.index("tf-reg"):].split("</figcaption>")[0]
    assert "its teacher" not in tf_caption and "its baseline" in tf_caption and "no teacher network" in tf_caption
    normal_caption = page[page.index("normal:"):].split("</figcaption>")[0]
    assert "the student, its baseline (trained alone, same settings and seed) and its teacher" in normal_caption


def test_a_gallery_names_its_sweep_point(tmp_path, monkeypatch):
    """The gallery's title named the run, not its point: two temperatures' galleries read alike."""
    store = RunStore(tmp_path / "runs")
    student = build_specs("normal", "test_resnet", ["resnet18"], DATA, TRAIN, KDConfig(temperature=2.0), 0)
    base = build_specs("baseline", "test_resnet", [], DATA, TRAIN, KDConfig(), 0)
    slug, n = "gradcam-test-n2-s0-true", 2
    for spec in (student, base, student.teachers[0]):
        folder = store.run_dir(spec.run_id) / "explain"
        folder.mkdir(parents=True)
        np.savez(folder / f"{slug}.npz", maps=np.zeros((n, 8, 8), np.float16), preds=np.zeros(n, int),
                 images=np.zeros((n, 8, 8), np.uint8), true=np.zeros(n, int))
    (store.run_dir(student.run_id) / "explain" / f"{slug}.png").write_bytes(b"stored")
    entry = {"key": {"method": "gradcam", "target": "true", "split": "test"}, "layer": "layer1", "cells": 8,
             "class_names": ["a", "b"], "images": [{}] * n,
             "agreement": {"teachers": [student.teachers[0].run_id], "baseline": base.run_id}}
    titles = []
    monkeypatch.setattr(F, "explain_figure", lambda images, columns, true, names, title, finding=False: titles.append(title))
    monkeypatch.setattr(F, "png_bytes", lambda fig: b"drawn")
    records = [_done(student, {"entries": {slug: entry}}), _done(base), _done(student.teachers[0])]
    page = html.gallery_section(store, records, {student.run_id: "T=2"})
    assert titles and "T=2" in titles[0] and ", T=2, seed 0" in page
    assert html.gallery_section(store, records, {}) and len(titles) == 1  # no point: the stored picture


def test_the_reports_tables_carry_their_per_seed_values():
    """The HTML report's tables showed no per-seed values; each number cell has them (and its family, p, method,
    MDE and mark) on hover and in the folded list under its table."""
    t = build(sim.study(np.random.default_rng(3), teachers=("resnet18",))).get("students_normal")
    page = html.table_html(t)
    gain = next(r for r in t.rows if r[1] == "test")[t.columns.index("gain resnet18")]
    assert gain.seeds_text() in page and "per-seed values of every cell" in page
    assert f'title="gain resnet18: n=3×300 · {gain.seeds_text()}' in page
