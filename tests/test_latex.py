"""The LaTeX a paper takes (issue 35, items 6 and 11): one table of each kind compiles with pdflatex (where it is
installed: Debian's texlive-latex-extra has booktabs), wide tables stay within a landscape page, and a sweep's bold
cell is the value chosen on val, never the best on test."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from kdengine.reports.latex import table_latex
from kdengine.reports.table_model import cell_text
from kdengine.reports.tables import build, export
from kdengine.runspec import KDConfig
from kdengine.store.lifecycle import FINISHED
from kdengine.store.status import RunStatus
from tests import stats_sim as sim

KINDS = {"models", "students_normal", "sweep_kd_temperature", "sweep_kd_alpha", "sweep_best", "attention",
         "robustness", "robustness_normal"}


def every_kind(rng=None):
    """A swept study under shift with attention maps, in memory: every kind of table the tables make."""
    rng = rng or np.random.default_rng(0)
    records = sim.shifted(rng, seeds=3, images=200, teachers=("resnet18", "resnet34"), temperatures=(2.0, 4.0),
                          method_sd=0.3, shift_sd=0.3, effect=-0.4)
    base = {r.seed: r for r in records if r.kind == "ce"}
    for r in records:
        if r.kind != "kd":
            continue
        n = 12
        draw = lambda: [round(float(x), 4) for x in rng.uniform(0.1, 0.6, n)]  # noqa: E731
        agree = {"teachers": [r.spec.teachers[0].run_id], "baseline": base[r.seed].run_id,
                 "teacher_student": {"spearman": draw(), "top_iou": draw()},
                 "teacher_baseline": {"spearman": draw(), "top_iou": draw()},
                 "chance_matrix": {"spearman": [[0.0] * n] * n, "top_iou": [[0.1] * n] * n}}
        r.explain = {"entries": {"gradcam-test": {
            "key": {"method": "gradcam", "target": "true", "version": 3}, "layer": "layer2", "cells": 8,
            "agreement_measured": True, "agreement": agree,
            "images": [{"row": i, "flat": False, "road_most": -0.2, "road_least": 0.0, "road_random_most": -0.1,
                        "road_random_least": -0.05, "sanity_spearman": 0.1, "border_mass": 0.3} for i in range(n)]}}}
    axes = {"kd.temperature": [2.0, 4.0], "kd.alpha": [KDConfig().alpha]}
    return build(records, axes=axes, title="Every kind of table − a study in memory")


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex is not installed (Debian: apt-get install texlive-latex-extra, which has "
                           "booktabs); the LaTeX is checked as text in test_statistics.py")
def test_one_table_of_each_kind_compiles_within_a_landscape_page(tmp_path):
    tables = every_kind()
    assert {t.name for t in tables.tables} == KINDS
    export(tables, tmp_path, "latex")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert done.returncode == 0 and (tmp_path / "tables.pdf").stat().st_size > 5000, done.stdout[-3000:]
    assert "Overfull \\hbox" not in log, log[log.index("Overfull"):][:600]  # nothing runs past the page's width
    assert "Float too large" not in log


def test_a_sweeps_bold_cell_is_the_value_chosen_on_val():
    """Issue 35, item 6: one export read "best on val: 2" with the bold on T=8, the best test gain: the choice on
    test that the rule removed, put back by the typesetting."""
    base, students = sim.specs(2, (2.0, 8.0))
    records = [sim.RunRecord(b.run_id, b, RunStatus(FINISHED), {"teachers": [], "val": {"accuracy": 0.70},
                                                                  "test": {"accuracy": 0.50}}, preds={}) for b in base]
    for (teacher, t), specs in students.items():
        if teacher == "resnet18":  # T=2: better on val, T=8: better on test
            val, test = (0.80, 0.55) if t == 2.0 else (0.72, 0.65)
            records += [sim.RunRecord(s.run_id, s, RunStatus(FINISHED), {"teachers": [], "val": {"accuracy": val},
                                                                          "test": {"accuracy": test + s.seed / 100}},
                                      preds={}) for s in specs]
    t = build(records, axes={"kd.temperature": [2.0, 8.0]}).get("sweep_kd_temperature")
    chosen = t.columns.index("gain T=2")
    assert str(t.rows[0][t.columns.index("best on val")]) == "2" and t.emphasis == {(0, chosen)}
    tex = table_latex(t)
    bold = tex[tex.index(r"\textbf{") + len(r"\textbf{"):]
    assert bold.startswith(cell_text(t.rows[0][chosen], gain=True).split(" ")[0].replace("-", "$-$"))
    assert tex.count(r"\textbf{") == 1
