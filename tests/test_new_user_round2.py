"""What a new user tripped over, round two (issue 26): sweep points are never counted as seeds and look alike
nowhere; bad study files and failing hints; filters that match nothing."""
from __future__ import annotations

import numpy as np

from kdengine.reports import figures as F
from kdengine.reports import html
from kdengine.reports.tables import build
from tests import stats_sim as sim


def _shift(acc: float) -> dict:
    return {"clean": {"accuracy": acc}, "mean_accuracy": acc - 0.1, "relative_drop": 0.1,
            "per_shift": {"contrast": acc - 0.1}, "cells": {"contrast": {"1": {"accuracy": acc - 0.1}}},
            "key": {"severities": [1]}}


def _temperature_sweep():
    """One seed, T in {1, 4}: one baseline serves both points (the issue's study, in memory)."""
    base_specs, students = sim.specs(1, (1.0, 4.0))
    rows = {"val": np.arange(20), "test": np.arange(100, 120)}
    ones = {"val": np.ones(20), "test": np.ones(20)}
    base = sim.record(base_specs[0], ones, rows)
    kd = [sim.record(students[("resnet18", T)][0], ones, rows) for T in (1.0, 4.0)]
    for r, acc in zip([base, *kd], (0.5, 0.6, 0.9)):
        r.shift = _shift(acc)
    return base, kd


def test_the_report_keeps_sweep_points_apart_and_counts_a_baseline_once(monkeypatch):
    base, kd = _temperature_sweep()
    records = [base, *kd]
    tables = build(records, axes={"kd.temperature": [1.0, 4.0]})
    assert tables.points[kd[0].run_id] == "T=1" and tables.points[kd[1].run_id] == "T=4"
    drawn = []
    monkeypatch.setattr(F, "robustness_figure", lambda curves, title: drawn.append((title, curves)))
    monkeypatch.setattr(F, "png_bytes", lambda fig: b"")
    html.robustness_section(records, tables.points)
    assert [t for t, _ in drawn] == ["normal: resnet18 → test_resnet, T=1 under acquisition shift",
                                     "normal: resnet18 → test_resnet, T=4 under acquisition shift"]
    for (_, curves), student_acc in zip(drawn, (0.6, 0.9)):
        legend = curves["contrast"]
        assert set(legend) == {"student (normal), n=1", "baseline, n=1"}  # one seed, one baseline: never n=2
        assert legend["student (normal), n=1"][1][0] == student_acc  # its own point's accuracy, not a mean of both

    titles = []
    monkeypatch.setattr(F, "overlay_figure", lambda series, title: titles.append(title))

    class Store:
        def events(self, run_id):
            return []

    html.student_section(Store(), records, tables.points)
    assert titles == ["normal: resnet18 → test_resnet, T=1, seed 0", "normal: resnet18 → test_resnet, T=4, seed 0"]


def test_the_robustness_table_names_sweep_points_as_the_other_tables_do():
    base, kd = _temperature_sweep()
    tables = build([base, *kd], axes={"kd.temperature": [1.0, 4.0]})
    robust = tables.get("robustness")
    labels = {row[0] for row in robust.rows}
    assert labels == {"T=1", "T=4", "every point"}  # not A, B, C


def _study_text(top: dict, block: dict, sections: dict) -> str:
    import json

    def val(v):
        return json.dumps(v) if not isinstance(v, dict) else "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"

    lines = [f"{k} = {val(v)}" for k, v in top.items()]
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {val(v)}" for k, v in table.items()]
    lines.append("[[experiments]]")
    lines += [f"{k} = {val(v)}" for k, v in block.items()]
    return "\n".join(lines) + "\n"


def _every_key():
    """Each key a study file takes (the schema's own declarations), where a wrong kind of value can go."""
    from kdengine.data.corruptions import ShiftConfig
    from kdengine.options import infos
    from kdengine.runspec import CONFIGS

    keys = [("top", k) for k in ("name", "seeds", "teachers", "description", "sweep", "extends")]
    keys += [("block", k) for k in ("strategy", "teachers", "students", "name", "sweep")]
    for section, cls in (("data", CONFIGS["data"]), ("train", CONFIGS["train"]), ("kd", CONFIGS["kd"]),
                         ("teacher_train", CONFIGS["train"]), ("shift", ShiftConfig)):
        keys += [(section, i.name) for i in infos(cls)]
    return keys


def test_every_key_of_a_study_file_refuses_a_wrong_kind_of_value_in_one_line(tmp_path, capsys):
    """A list, a table or a number where the key takes something else: one line naming the key, exit 2, never a
    traceback (the review's strategy = ["normal", "reverse"] gave TypeError: unhashable type: 'list')."""
    from kdengine.cli import main

    good_top = {"name": "k", "seeds": [0]}
    good_block = {"strategy": "normal", "teachers": ["resnet10t"], "students": ["test_resnet"]}
    good_sections = {"data": {"source": "synthetic", "image_size": 32}, "train": {"epochs": 1}}
    checked = 0
    for where, key in _every_key():
        for bad in (["a", "b"], {"x": 1}, 7, "text", True):
            top, block = dict(good_top), dict(good_block)
            sections = {k: dict(v) for k, v in good_sections.items()}
            (top if where == "top" else block if where == "block" else sections.setdefault(where, {}))[key] = bad
            path = tmp_path / "s.toml"
            path.write_text(_study_text(top, block, sections))
            try:
                code = main(["study", "run", str(path), "--dry-run", "--runs-dir", str(tmp_path / "runs")])
            except SystemExit as exc:  # argparse's own exit is not what is tested here
                code = exc.code
            out, err = capsys.readouterr()
            assert "Traceback" not in err and "Error:" not in err, (where, key, bad, err)
            if code != 0:
                assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (where, key, bad, err)
                checked += 1
    assert checked > 100  # most wrong kinds are refused (a number is a fine seed list item, text a fine name …)
    assert not (tmp_path / "runs").exists()  # a dry run, refused or not, leaves nothing behind
