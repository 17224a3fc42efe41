"""The tables' statistics: each defect the statistical review found, and calibration by simulation on constructed
studies (no training): no false marks beyond what the method promises with no effect, the effect found when one
is planted, and a choice of the best value that does not flatter it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from kdengine.reports.intervals import StatsOptions
from kdengine.reports.stats import Summary, summarize, two_way
from kdengine.reports.sweep import sweeps
from kdengine.reports.tables import build, table_csv, table_markdown
from kdengine.store.lifecycle import FINISHED
from kdengine.store.status import RunStatus
from tests import stats_sim as sim

SIMULATED = 200  # tables per calibration check


def _marks(table) -> list[bool]:
    return [v.marked for row in table.rows for v in row if isinstance(v, Summary) and v.tested]


def _within_promise(false_tables: int, n: int, promise: float = 0.05) -> bool:
    """Not more false marks than the promise, beyond Monte Carlo error (one-sided binomial test at 1%)."""
    return binomtest(false_tables, n, promise, alternative="greater").pvalue > 0.01


def _two_seeds_that_each_gain_one_image(images: int = 250):
    """The review's 2-seed study from real counts: baselines right on 171 and 200 of 250 test images, each student
    right on the same images and one more. The gains, 172/250 - 171/250 and 201/250 - 200/250, differ in the last
    bit (no equal floats are built here)."""
    base_specs, student_specs = sim.specs(2)
    rows = {"val": np.arange(20), "test": np.arange(images)}
    records = []
    for seed, right in ((0, 171), (1, 200)):
        base = np.zeros(images)
        base[:right] = 1.0
        student = base.copy()
        student[right] = 1.0  # one image more
        val = np.ones(20)
        records.append(sim.record(base_specs[seed], {"val": val, "test": base}, rows))
        records.append(sim.record(student_specs[("resnet18", 4.0)][seed], {"val": val, "test": student}, rows))
    return records


def test_round_off_is_no_spread_on_both_paths():
    """The review's case: two seeds that each gain one image in 250. The seeds-only path printed '+0.0040 ± 0.0000
    [+0.0040, +0.0040] (n=2) *' with p = 8.8e-15; the default path divided by zero in two_way, and every table
    command exited 1. Now both say: no spread, no interval, no test, no mark."""
    records = _two_seeds_that_each_gain_one_image()
    gains = [r.metric("test", "accuracy") for r in records]
    assert gains[1] - gains[0] != gains[3] - gains[2]  # the round-off is really there
    for interval in ("seeds+images", "seeds"):
        table = build(records, interval=interval).get("students_normal")
        gain = next(r for r in table.rows if r[1] == "test")[table.columns.index("gain resnet18")]
        assert gain.mean == pytest.approx(0.004) and gain.std == 0.0, interval
        assert not gain.has_interval and gain.p is None and not gain.marked, interval
        assert "*" not in table_markdown(table).split("| test_resnet | test")[1].splitlines()[0]


def test_no_spread_is_round_off_only():
    """A spread of one image in a million is a spread; one in the last bit of a double is not."""
    from kdengine.reports.stats import no_spread

    assert no_spread([172 / 250 - 171 / 250, 201 / 250 - 200 / 250])
    assert not no_spread([0.5, 0.5 + 1e-6])
    s = summarize([0.5, 0.5 + 1e-6, 0.5 + 2e-6], test=True)
    assert s.has_interval and s.p is not None


def test_a_zero_width_interval_gets_no_mark_and_every_cell_shows_n():
    """Seeds that agree exactly on the same images: no interval and no test, on the two-way path as on the seeds'."""
    d = np.zeros((2, 250))
    d[:, 7] = 1.0  # each seed: the student right on one image its baseline got wrong
    s = two_way(d, seeds=[0, 1], test=True)
    assert s.mean == pytest.approx(0.004) and s.std == 0.0
    assert not s.has_interval and s.p is None and not s.marked
    rng = np.random.default_rng(3)
    table = build(sim.study(rng, seeds=2, images=250, teachers=("resnet18",))).get("students_normal")
    text = table_markdown(table)
    body = [line for line in text.splitlines() if line.startswith("| test_resnet")]
    assert body and all(line.count("(n=2)") == line.count("±") for line in body)


def test_no_effect_no_false_marks_beyond_the_promise():
    """200 simulated tables with no true effect (4 teachers' students against one shared baseline, 3 seeds, a new
    test set each time): Holm's marks (per table) and Benjamini-Hochberg's stay within 5%; the review's way (a
    t-interval over seeds, uncorrected) marks far more often."""
    rng = np.random.default_rng(11)
    found = {"holm": 0, "bh": 0, "old": 0}
    for _ in range(SIMULATED):
        records = sim.study(rng)
        for name, kw in (("holm", {}), ("bh", {"correction": "bh"}), ("old", {"interval": "seeds",
                                                                              "correction": "none"})):
            found[name] += any(_marks(build(records, **kw).get("students_normal")))
    assert _within_promise(found["holm"], SIMULATED), found
    assert _within_promise(found["bh"], SIMULATED), found  # every null true: the FDR is the chance of any mark
    assert not _within_promise(found["old"], SIMULATED), found  # the defect: well over 5% of tables


def test_a_planted_effect_is_found():
    """A gain planted for every student (about +6 points of accuracy; 5 seeds, 1,000 test images): found in nearly
    every table, every cell, after the correction."""
    rng = np.random.default_rng(5)
    tables = [build(sim.study(rng, seeds=5, images=1000, effect=0.4, seed_sd=0.05, method_sd=0.3,
                              val_images=20)).get("students_normal") for _ in range(40)]
    cells = [m for t in tables for m in _marks(t)]
    gains = [v.mean for t in tables for row in t.rows for v in row if isinstance(v, Summary) and v.tested]
    assert np.mean(gains) > 0.04
    assert np.mean(cells) > 0.9, np.mean(cells)


def test_the_interval_covers_the_test_set_as_well_as_the_seeds():
    """With many seeds the seed-only interval shrinks around the one test set's value: over fresh test sets its
    cells miss the truth (no gain) far more than 5% of the time; the seeds+images interval keeps its 95%."""
    rng = np.random.default_rng(8)
    miss = {"seeds+images": [], "seeds": []}
    for _ in range(60):
        records = sim.study(rng, seeds=10, images=300, teachers=("resnet18", "resnet34"), method_sd=1.5,
                            val_images=20)
        for interval in miss:
            t = build(records, interval=interval, correction="none").get("students_normal")
            miss[interval] += [v.excludes_zero for row in t.rows for v in row if isinstance(v, Summary) and v.tested]
    n = len(miss["seeds"])
    assert _within_promise(sum(miss["seeds+images"]), n), sum(miss["seeds+images"])
    assert not _within_promise(sum(miss["seeds"]), n), sum(miss["seeds"])


def test_the_note_names_the_method_the_correction_and_the_cells_and_the_csv_has_p_values():
    rng = np.random.default_rng(2)
    records = sim.study(rng)
    t = build(records).get("students_normal")
    notes = " ".join(t.notes)
    assert "over seeds and test images" in notes and "after Holm over 4 tested cells" in notes
    header = table_csv(t).splitlines()[0].split(",")
    assert {"gain resnet18 p", "gain resnet18 p_adj", "gain resnet18 significant", "gain resnet18 per_seed"} <= \
        set(header)
    test_row = next(r for r in t.rows if r[1] == "test")
    g = test_row[t.columns.index("gain resnet18")]
    assert g.p_adj >= g.p and len(g.per_seed) == 3
    assert "after Holm" not in " ".join(build(records, correction="none").get("students_normal").notes)
    # older runs without per-image predictions: seeds only, and the note says why
    for r in records:
        r.preds = {}
    old = " ".join(build(records).get("students_normal").notes)
    assert "over seeds only" in old and "without predictions.npz" in old


def test_bad_options_are_one_line(capsys, tmp_path):
    from kdengine.cli import main

    for args, message in [(["--interval", "bootstrap"], "invalid choice: 'bootstrap'"),
                          (["--correction", "bonf"], "invalid choice: 'bonf'")]:
        assert main(["table", "--runs-dir", str(tmp_path), *args]) == 2
        assert message in capsys.readouterr().err


# -- choices without luck --------------------------------------------------------------------------------------
def _sweep_records(rng, seeds=3, values=(1.0, 2.0, 4.0, 8.0), run_sd=0.004, noise_sd=0.001, missing=()):
    """A T sweep with no effect, by accuracy only: each run's luck is shared by its val and test splits."""
    base, students = sim.specs(seeds, values)
    records = []

    def add(spec, mean):
        luck = rng.normal(0, run_sd)
        m = {s: {"accuracy": float(mean + luck + rng.normal(0, noise_sd))} for s in ("val", "test")}
        records.append(sim.RunRecord(spec.run_id, spec, RunStatus(FINISHED),
                                     {"class_names": ["a"], "teachers": [], "train": {}, **m}, preds={}))
    for spec in base:
        add(spec, 0.75)
    for (t, value), specs_ in students.items():
        if t == "resnet18":
            for spec in specs_:
                if (value, spec.seed) not in missing:
                    add(spec, 0.75)
    return records, {"kd.temperature": list(values)}


def test_held_out_choice_is_unbiased_where_the_plain_choice_is_not():
    """No effect, 4 values, 3 seeds: the test gain at the value chosen on val is flattered by the chosen runs' luck;
    chosen leave-one-seed-out it is not (mean within ±0.1 points of 0)."""
    rng = np.random.default_rng(21)
    plain, held = [], []
    for _ in range(300):
        records, axes = _sweep_records(rng)
        (row,) = sweeps(records, axes, "accuracy", StatsOptions("seeds"))[0].rows
        plain.append(row.choice.plain.mean)
        held.append(row.choice.held_out.mean)
    assert abs(np.mean(held)) < 0.001, np.mean(held)
    assert np.mean(plain) > 0.0015, np.mean(plain)


def _hand_sweep(vals: dict[tuple[float, int], float], base_val: float = 0.70):
    """Students at (T, seed) with the given val accuracy (test 0.5 + val / 10), beside one baseline per seed."""
    seeds = 1 + max(s for _, s in vals)
    base, students = sim.specs(seeds, tuple(sorted({t for t, _ in vals})))
    records = [sim.RunRecord(b.run_id, b, RunStatus(FINISHED),
                             {"teachers": [], "val": {"accuracy": base_val}, "test": {"accuracy": 0.5}}, preds={})
               for b in base]
    for (t, value), specs_ in students.items():
        for spec in specs_:
            if t == "resnet18" and (value, spec.seed) in vals:
                v = vals[(value, spec.seed)]
                records.append(sim.RunRecord(spec.run_id, spec, RunStatus(FINISHED),
                                             {"teachers": [], "val": {"accuracy": v},
                                              "test": {"accuracy": 0.5 + v / 10}}, preds={}))
    axes = {"kd.temperature": sorted({t for t, _ in vals})}
    (row,) = sweeps(records, axes, "accuracy")[0].rows
    return row


def test_the_best_value_is_chosen_on_the_seeds_every_value_has():
    """The review's case: T=4 finished on seed 0 only (0.81), T=1 on seeds 0 and 1 (0.73 and 0.81: mean 0.77).
    T=1 wins on the one seed they share, so it is the best value."""
    row = _hand_sweep({(1.0, 0): 0.83, (1.0, 1): 0.71, (4.0, 0): 0.81})
    assert row.choice.seeds == [0] and row.best == 1.0
    assert row.val[4.0].mean > 0.80 > row.val[1.0].mean  # the unpaired means would have picked T=4


def test_a_tie_is_marked():
    row = _hand_sweep({(1.0, 0): 0.80, (1.0, 1): 0.70, (4.0, 0): 0.70, (4.0, 1): 0.80})
    assert row.best == 1.0 and row.choice.ties == [4.0] and row.choice.text() == "1.0 (tie: 4.0)"


# -- attention on equal footing --------------------------------------------------------------------------------------
def _attention_records(rng, seeds=3, images=8, ts=None, tb=None, cells=7, shift_sd=0.1, noise_sd=0.1, effect=0.0):
    """KD students with explain.json agreements drawn with no effect: per image a level shared by student and
    baseline and by every seed, per seed a shift of each model's agreement (its luck), per (image, seed) noise."""
    base, students = sim.specs(seeds)
    level = rng.uniform(0.2, 0.6, images)
    records = []
    for spec in students[("resnet18", 4.0)]:
        def draw(plus=0.0):
            v = level + plus + rng.normal(0, shift_sd) + rng.normal(0, noise_sd, images)
            return [round(float(x), 4) for x in np.clip(v, -1, 1)]
        agree = {"teachers": [spec.teachers[0].run_id], "baseline": base[spec.seed].run_id,
                 "teacher_student": {"spearman": ts[spec.seed] if ts else draw(effect), "top_iou": draw(effect)},
                 "teacher_baseline": {"spearman": tb[spec.seed] if tb else draw(), "top_iou": draw()},
                 "chance": {"spearman": [0.0] * images, "top_iou": [0.1] * images}}
        entry = {"key": {"method": "gradcam", "target": "true"}, "layer": "layer4", "cells": cells,
                 "agreement_measured": cells >= 5, "agreement": agree,
                 "images": [{"flat": False, "road_most": -0.2, "road_least": 0.0, "sanity_spearman": 0.1,
                             "border_mass": 0.3} for _ in range(images)]}
        records.append(sim.RunRecord(spec.run_id, spec, RunStatus(FINISHED), {"teachers": [], "test": {}},
                                     explain={"entries": {"gradcam-test": entry}}, preds={}))
    return records


def _attention(records):
    from kdengine.reports.attention import attention_table
    from kdengine.reports.tables import finish_notes

    t = attention_table(records)
    finish_notes(t, StatsOptions())
    return t, dict(zip(t.columns, t.rows[0]))


def test_attention_interval_at_seed_level_keeps_its_promise():
    """No effect, 3 seeds x 8 images: the seed-level interval's marks (Holm over the table) stay within 5%; the
    review's interval over pooled (image, seed) pairs marks far more often."""
    rng = np.random.default_rng(4)
    ours = pooled = 0
    for _ in range(SIMULATED):
        records = _attention_records(rng)
        t, _ = _attention(records)
        ours += any(_marks(t))
        gains = [a - b for r in records for e in r.explain["entries"].values()
                 for a, b in zip(e["agreement"]["teacher_student"]["spearman"],
                                 e["agreement"]["teacher_baseline"]["spearman"])]
        s = summarize(gains, test=True)
        pooled += s.p < 0.05
    assert _within_promise(ours, SIMULATED), ours
    assert not _within_promise(pooled, SIMULATED), pooled


def test_attention_finds_a_planted_gain():
    """The student agrees with its teacher 0.4 more than its baseline does (5 seeds): marked in nearly every table."""
    rng = np.random.default_rng(9)
    marked = [all(_marks(_attention(_attention_records(rng, seeds=5, effect=0.4))[0])) for _ in range(40)]
    assert np.mean(marked) > 0.9, np.mean(marked)


def test_attention_columns_share_their_images_and_say_so():
    """Flat maps dropped separately made the columns average different images; now an image with any flat map is
    out of all three, and the table shows each model's share of flat maps, the chance level and the stage."""
    ts = {s: [None, 0.5, 0.5, 0.5] for s in range(2)}
    tb = {s: [0.9, None, 0.1, 0.1] for s in range(2)}
    _, row = _attention(_attention_records(np.random.default_rng(0), seeds=2, images=4, ts=ts, tb=tb))
    assert row["ρ teacher–student"].mean == pytest.approx(0.5) and row["ρ teacher–baseline"].mean == pytest.approx(0.1)
    assert row["gain ρ"].mean == pytest.approx(0.4)  # the same two images in all three
    assert row["ρ chance"].mean == 0.0 and row["stage"] == "layer4 (7x7)" and row["flat student"].mean == 0.0
    assert row["ROAD student"].mean == pytest.approx(0.2) and row["sanity ρ student"].mean == pytest.approx(0.1)


def test_attention_below_five_cells_is_not_reported():
    t, row = _attention(_attention_records(np.random.default_rng(0), cells=2))
    assert row["ρ teacher–student"] is None and row["gain IoU"] is None
    assert any("fewer than 5 x 5 native cells" in n for n in t.notes)


def test_top_region_overlap_is_tie_aware():
    """Two maps with no overlapping non-zero cell scored 0.70 (ties broken by raster position); now 0."""
    from kdengine.explain import measures as M

    a, b = np.zeros((32, 32)), np.zeros((32, 32))
    a[:4, :4], b[-4:, -4:] = 1.0, 1.0
    assert M.top_iou(a, b) == 0.0 and M.top_iou(a, a) == 1.0
    c = a.copy()
    c[:4, :5] = 1.0  # a tie at the boundary: every tied cell is in the region
    assert M.top_mask(c).sum() == 20


# -- tables that go into a paper -------------------------------------------------------------------------------------
def test_latex_has_booktabs_bold_best_marks_and_the_note_as_caption(tmp_path):
    from kdengine.reports.latex import table_latex
    from kdengine.reports.tables import export

    rng = np.random.default_rng(5)
    tables = build(sim.study(rng, seeds=5, images=1000, effect=0.4, seed_sd=0.05, method_sd=0.3, val_images=20))
    t = tables.get("students_normal")
    tex = table_latex(t)
    assert tex.count(r"\toprule") == 1 and tex.count(r"\midrule") == 1 and tex.count(r"\bottomrule") == 1
    assert r"\begin{tabular}{" + "l" * len(t.columns) + "}" in tex and r"\label{tab:students_normal}" in tex
    caption = tex[tex.index(r"\caption{"):tex.index(r"\label{")]
    assert "Holm" in caption and "tested cells" in caption and "seeds and test images" in caption
    body = tex[tex.index(r"\midrule"):tex.index(r"\bottomrule")]
    rows = [line for line in body.splitlines() if "&" in line]
    assert len(rows) == len(t.rows) and all(line.count(r"\textbf{") >= 1 for line in rows)  # the best (and its ties)
    assert all(line.count(r"\textbf{") == 1 for line in rows if " & train & " not in line)  # train: all 0.9, tied
    test_row = next(line for line in rows if line.split("&")[1].strip() == "test")
    marked = sum(v.marked for v in t.rows[[r[1] for r in t.rows].index("test")] if isinstance(v, Summary))
    assert test_row.count("*") == marked > 0 and "(n=5)" in test_row and r"$\pm$" in test_row
    assert "±" not in tex and "–" not in tex  # pdflatex takes it as it is
    written = export(tables, tmp_path / "out", "latex")
    assert (tmp_path / "out" / "tables.tex") in written and (tmp_path / "out" / "students_normal.tex").is_file()
    doc = (tmp_path / "out" / "tables.tex").read_text()
    assert doc.startswith(r"\documentclass{article}") and r"\usepackage{booktabs}" in doc and doc.count(r"\begin{table}") == len(tables.tables)


def test_a_damaged_predictions_file_falls_back_to_seeds(tmp_path):
    """predictions.npz that cannot be read (a torn copy, garbage) never breaks a table: its cells cover the seeds."""
    from kdengine.store.records import collect
    from kdengine.store.runstore import PREDICTIONS, read_predictions
    from tests.tui_helpers import fake_finished_store

    root = tmp_path / "runs"
    fake_finished_store(root, seed=0, accuracies=(0.8, 0.70, 0.75))
    store, student, _ = fake_finished_store(root, seed=1, accuracies=(0.8, 0.72, 0.71))
    (store.run_dir(student.run_id) / PREDICTIONS).write_bytes(b"PK\x03\x04 not a zip")
    assert read_predictions(store.run_dir(student.run_id) / PREDICTIONS) is None
    t = build(collect(store)).get("students_normal")
    gain = next(r for r in t.rows if r[1] == "test")[t.columns.index("gain resnet18")]
    assert gain.method == "seeds" and gain.n == 2
