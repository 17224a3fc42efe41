"""What a new user tripped over, round two (issue 26): sweep points are never counted as seeds and look alike
nowhere; bad study files and failing hints; filters that match nothing; reports written where the store expects."""
from __future__ import annotations

import asyncio
import os
import json
import re
from pathlib import Path

import numpy as np
import pytest

from kdengine import api
from kdengine.atomic import write_json
from kdengine.cli import main
from kdengine.data.config import DataConfig
from kdengine.data.corruptions import ShiftConfig
from kdengine.errors import UsageError
from kdengine.execution import executor
from kdengine.options import infos
from kdengine.reports import figures as F
from kdengine.reports import html
from kdengine.reports.tables import build
from kdengine.runspec import CONFIGS, KDConfig, TrainConfig, build_specs
from kdengine.store import RunStore
from kdengine.commands.train_cmd import teacher_lines
from kdengine.store.queue import teacher_plans
from kdtui.app import KDStudyApp
from tests.conftest import SMALL_SYNTH
from tests import stats_sim as sim
from tests.tui_helpers import fake_finished_store, wait_for


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

    keys = [("top", k) for k in ("name", "seeds", "teachers", "description", "sweep", "extends")]
    keys += [("block", k) for k in ("strategy", "teachers", "students", "name", "sweep")]
    for section, cls in (("data", CONFIGS["data"]), ("train", CONFIGS["train"]), ("kd", CONFIGS["kd"]),
                         ("teacher_train", CONFIGS["train"]), ("shift", ShiftConfig)):
        keys += [(section, i.name) for i in infos(cls)]
    return keys


def test_every_key_of_a_study_file_refuses_a_wrong_kind_of_value_in_one_line(tmp_path, capsys):
    """A list, a table or a number where the key takes something else: one line naming the key, exit 2, never a
    traceback (the review's strategy = ["normal", "reverse"] gave TypeError: unhashable type: 'list')."""

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


def test_a_teacher_hint_offers_only_a_run_that_would_be_accepted(tmp_path):
    """The review: a finished teacher on 32 px images was offered (--teacher RUN_ID) to a student at 48 px, and
    following the hint failed ("a teacher must see the student's data")."""


    store = RunStore(tmp_path)

    def finished_teacher(image_size: int, epochs: int):
        spec = build_specs("normal", "test_resnet", ["resnet10t"], DataConfig(source="synthetic", image_size=image_size),
                           TrainConfig(epochs=epochs), KDConfig(), 0)
        t = spec.teachers[0]
        store.create(t)
        store.write_status(t.run_id, "finished")
        write_json(store.run_dir(t.run_id) / "metrics.json", {"test": {"accuracy": 0.5}})
        return t

    other_size = finished_teacher(32, 1)
    wanted = build_specs("normal", "test_resnet", ["resnet10t"], DataConfig(source="synthetic", image_size=48),
                         TrainConfig(epochs=2), KDConfig(), 0)
    with pytest.raises(UsageError, match="a teacher must see the student's data"):  # what following it did
        build_specs("normal", "test_resnet", [other_size], wanted.data, wanted.train, KDConfig(), 0)
    (note,) = teacher_lines(store, teacher_plans(store, wanted), "training")
    assert other_size.run_id not in note and "no finished resnet10t run with seed 0 on the student's data" in note
    # a finished teacher on the same data but other settings is offered, and following the hint works
    same_data = finished_teacher(48, 1)
    (plan,) = teacher_plans(store, wanted)  # the closest run, as facts; the CLI says how to use it
    assert plan.closest == same_data.run_id and plan.differs == ["train.epochs 1→2"]
    (note,) = teacher_lines(store, [plan], "training")
    assert f"pass --teacher {same_data.run_id}" in note and "train.epochs 1→2" in note
    assert build_specs("normal", "test_resnet", [same_data], wanted.data, wanted.train, KDConfig(), 0).teachers


def test_a_filter_that_matches_nothing_is_no_error_but_an_unknown_id_is(tmp_path, capsys):

    store, _, _ = fake_finished_store(tmp_path / "runs")
    runs = ["--runs-dir", str(store.root)]
    for verb in ("retry", "stop"):
        assert main(["runs", verb, "--state", "failed", *runs]) == 0  # nothing failed: a script goes on
        assert f"no run matches: nothing to {verb}" in capsys.readouterr().out
    assert main(["runs", "delete", "--state", "queued", "--yes", *runs]) == 0
    assert len(store.list_ids()) == 3  # nothing deleted
    assert main(["runs", "retry", "no-such-run", *runs]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_demo_and_kdtui_write_reports_under_the_store_where_the_doctor_expects_them(tmp_path):


    make = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    demo = make.split("\ndemo:")[1].split("\n\n")[0]
    outs = re.findall(r"--out (\S+)", demo)
    assert outs and all(o.startswith("runs/reports/") for o in outs), outs  # runs doctor: not "not a run"

    async def default_folder():
        app = KDStudyApp(tmp_path / "runs", start_workers=False)
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_export()
            await pilot.pause()
            return app.screen.query_one("#export-path").value


    folder = Path(asyncio.run(default_folder()))
    assert folder.parent == tmp_path / "runs" / "reports"  # not ./kdstudy-… in the working directory (a clone)


def test_stopping_a_run_queued_again_after_an_epoch_says_where_it_resumes(tmp_path):


    store = RunStore(tmp_path)
    spec = build_specs("baseline", "test_resnet", [], DataConfig(source="synthetic", image_size=32),
                       TrainConfig(epochs=3), KDConfig(), 0)
    store.create(spec)
    store.write_status(spec.run_id, "queued", progress={"epochs_done": 1, "epochs": 3})
    stopped = api.open(tmp_path).stop(spec.run_id)  # the run's reason says where it resumes, as facts
    assert not stopped.stopping and stopped.now == api.State.STOPPED
    assert "before it started" not in stopped.reason and "resumes after epoch 1" in stopped.reason
    fresh = build_specs("baseline", "test_resnet", [], DataConfig(source="synthetic", image_size=32),
                        TrainConfig(epochs=2), KDConfig(), 0)
    store.create(fresh)
    assert api.open(tmp_path).stop(fresh.run_id).reason == "stopped before it started"
    assert main(["runs", "stop", spec.run_id, "--runs-dir", str(tmp_path)]) == 2  # stopped already: one line


async def test_the_launch_form_gives_no_key_to_a_field_after_you_leave_it(tmp_path):
    """The review: tab into Teacher, leave (F5, the palette), press 2 then 1: focus was back in Teacher with its
    text selected, so 1 replaced the model's name."""

    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        form = app.screen
        teacher = form.query_one("#teacher")
        teacher.focus()
        await pilot.pause()
        name = teacher.value
        app.switch_mode("runs")  # what F5 (a launch) and the palette's "Runs" do
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", timeout=10)
        for key, screen in (("2", "LaunchScreen"), ("1", "RunsScreen"), ("2", "LaunchScreen")):
            await pilot.press(key)
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == screen, timeout=10)
        assert teacher.value == name and form.focused is not teacher  # no field holds the keys


def test_a_foreground_study_trains_beside_a_live_worker_instead_of_queueing_behind_it(tmp_path, monkeypatch):
    """The review: with kdtui's worker alive, 10 of 12 runs of `study run` printed "waiting for …: another worker
    is training it". What the other worker holds is left to it; the rest trains here first."""




    store = RunStore(tmp_path)
    data = DataConfig(source="synthetic", image_size=32)
    specs = [build_specs("baseline", m, [], data, TrainConfig(epochs=1), KDConfig(), 0)
             for m in ("test_resnet", "test_efficientnet", "test_convnext")]
    for s in specs:
        store.create(s)
    store.write_status(specs[0].run_id, "running", pid=os.getpid())  # a live worker holds the first
    trained = []
    monkeypatch.setattr(executor, "ensure_finished", lambda store, spec, dev, **kw: trained.append(spec.run_id) or {})
    api.open(tmp_path).train_here(specs, [s.run_id for s in specs], "cpu", keep_going=True, log=lambda m: None)
    assert trained == [specs[1].run_id, specs[2].run_id, specs[0].run_id]  # its run last: waited for, not first


async def test_results_at_80_by_24_is_mostly_table_not_notes(tmp_path):
    """The review: in "all runs" the settings notes were one paragraph of 13 lines and left 6 table rows."""
    for epochs in range(1, 9):  # eight settings groups: a note each, two seeds (notes on intervals, power)
        for seed in (0, 1):
            store, _, _ = fake_finished_store(tmp_path / "runs", epochs=epochs, seed=seed,
                                              accuracies=(0.8 + seed / 50, 0.7 + seed / 100, 0.75))
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ResultsScreen" and app.screen.tables,
                       timeout=60)
        screen = app.screen
        note = screen.query_one("#results-note")
        full = screen._notes
        assert len(full) > 80 * 6  # the notes would take many lines
        await pilot.pause()
        assert note.size.height <= 3 and "(n: all notes)" in str(note.render())
        await pilot.press("n")
        await pilot.pause()
        assert note.size.height > 3 and "(n: all notes)" not in str(note.render())


async def test_workers_and_results_show_the_store_as_it_is_when_you_come_back(tmp_path):
    """The review: Workers showed an old run and "2 queued · 1 running" for more than 1.5 s before refreshing;
    the first Results froze with no word of loading."""
    store, _, _ = fake_finished_store(tmp_path / "runs")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: getattr(app.screen, "snapshot", None) is not None
                       and app.screen.snapshot.states.get("finished") == 3, timeout=20)
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", timeout=10)
        spec = build_specs("baseline", "test_efficientnet", [], DataConfig(source="synthetic", image_size=32),
                           TrainConfig(epochs=1), KDConfig(), 0)
        api.open(store.root).queue(spec, device="cpu")
        started = asyncio.get_running_loop().time()
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen.snapshot.states.get("queued") == 1, timeout=10)
        assert asyncio.get_running_loop().time() - started < 1.8  # at once, not at the next 2 s tick (POLL_S)
        await pilot.press("3")
        await pilot.pause()
        if app.screen.tables is None:  # still building: the screen says so
            assert "building the tables" in str(app.screen.query_one("#results-note").renderable)
        await wait_for(pilot, lambda: app.screen.tables is not None, timeout=60)


def test_reverse_kd_with_a_larger_teacher_is_warned_of_when_only_queued(tmp_path, capsys):
    """The trainer's warning reached the worker's log alone (issue 26): ``--queue`` says it at once."""
    common = ["train", "--data", SMALL_SYNTH, "--image-size", "32", "--epochs", "1", "--queue",
              "--runs-dir", str(tmp_path / "runs")]
    assert main([*common, "--strategy", "reverse", "--teacher", "resnet10t", "--student", "test_resnet"]) == 0
    err = capsys.readouterr().err
    assert "warning: reverse KD expects a smaller teacher, but resnet10t has" in err and "test_resnet" in err
    assert main([*common, "--strategy", "reverse", "--teacher", "test_resnet", "--student", "resnet10t"]) == 0
    assert "expects" not in capsys.readouterr().err  # the sizes the strategy wants: nothing to say
