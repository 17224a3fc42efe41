"""kdtui on a multi-label task (issue 34, item 7): a run trained for real on the embedded multi-label set shows one
confusion matrix per finding, Results reads its tables in AUROC until another metric is chosen, and the Looks pane
names the image's findings and the one its map answers for."""
from __future__ import annotations

import json

from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from kdtui.app import KDStudyApp
from tests.engine_helpers import FAST
from tests.test_tui import text_of
from tests.tui_helpers import open_launch, wait_for

SIZE = (110, 34)


async def test_a_multi_label_run_in_kdtui(capsys):
    assert main(["train", *FAST, "--data", "synthetic:images=140,labels=multi", "--epochs", "1", "--strategy",
                 "baseline", "--student", "test_resnet", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert main(["explain", run["run_id"], "--images", "4"]) == 0
    capsys.readouterr()
    findings = run["class_names"]
    store = RunStore(runs_dir())
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: run["run_id"] in screen.rows, timeout=30)
        await wait_for(pilot, lambda: screen.view is not None and screen.view.metrics is not None, timeout=30)
        await pilot.press("m")
        pane = screen.query_one("#confusion-pane")
        await wait_for(pilot, lambda: "each finding at 0.5" in text_of(pane), timeout=10)
        text = text_of(pane)
        # one 2 x 2 per finding, counted as metrics.json has it
        assert all(name[:24] in text for name in findings) and text.count("present") >= len(findings)
        tn, fp = run["test"]["confusion"][findings[0]][0]
        assert f"{tn}" in text and f"{fp}" in text
        await pilot.press("p")
        report = screen.query_one("#report-pane")
        await wait_for(pilot, lambda: "precision" in text_of(report), timeout=10)
        assert findings[-1] in text_of(report)
        await pilot.press("l")
        looks = screen.query_one("#looks-pane")
        await wait_for(pilot, lambda: "image 1/4" in text_of(looks), timeout=10)
        image = json.loads((store.run_dir(run["run_id"]) / "explain.json").read_text())
        (entry,) = image["entries"].values()
        first = entry["images"][0]
        assert f"(map for {findings[first['target']]})" in text_of(looks)
        await pilot.press("3")
        results = app.screen
        await wait_for(pilot, lambda: results.tables is not None, timeout=60)
        assert results.metric == "auroc" and results.tables.metric == "auroc"  # a multi-label task: AUROC first
        assert "AUROC" in text_of(results.query_one("#strategy-bar"))
        await pilot.press("m")  # a metric chosen stays chosen
        await wait_for(pilot, lambda: results.tables.metric == "ap", timeout=60)
        await pilot.pause(0.5)
        assert results.metric == "ap"


async def test_the_launch_form_says_what_a_task_is_read_by(tmp_path):
    """A binary or multi-label source's tables are read by AUROC first: the form's data line says so (a multi-class
    source's line does not)."""
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        line = screen.query_one("#data-summary")
        screen.query_one("#source").value = "synthetic:images=140,labels=multi"
        await wait_for(pilot, lambda: "multi-label" in text_of(line), timeout=30)
        assert "read by AUROC, AP, sensitivity and specificity" in " ".join(text_of(line).split())  # (wrapped)
        screen.query_one("#source").value = "synthetic:images=140"
        await wait_for(pilot, lambda: "multi-class" in text_of(line), timeout=30)
        assert "read by" not in text_of(line)


async def test_results_builds_a_binary_views_tables_once_in_auroc(tmp_path, monkeypatch):
    """The first visit built the tables in accuracy, saw the tasks, and built them all again in AUROC: the build
    now finds the usual metric itself (api.Store.tables with metric None), once."""
    import numpy as np

    from kdengine import api
    from tests import stats_sim as sim

    sim.write_store(sim.ranked(np.random.default_rng(40), seeds=2, images=60, teachers=("resnet18",), val_images=40),
                    tmp_path / "runs")
    asked = []
    real = api.Store.tables

    def counted(self, study=None, metric="accuracy", **stats):
        asked.append(metric)
        return real(self, study, metric, **stats)

    monkeypatch.setattr(api.Store, "tables", counted)
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.tables is not None, timeout=30)
        await pilot.pause(0.5)
        assert screen.metric == "auroc" and screen.tables.metric == "auroc"
        assert asked == [None], asked  # one build, and no other poll rebuilt it
        await pilot.press("m")  # a metric chosen (the one after AUROC): built in it, once
        await wait_for(pilot, lambda: screen.tables.metric == "ap", timeout=30)
        assert asked == [None, "ap"], asked
