"""kdtui as a new user met it (issue 18): each defect reproduced, and snapshots at 80x24 and 200x50 of the run
list grouped by study, Results with the robustness tabs, and the detail of a stopped run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kdtui.app import KDStudyApp
from kdtui.store_view import done_cell, epoch_cell
from tests.tui_helpers import fake_study_store, wait_for

SIZES = [(80, 24), (200, 50)]


def snap_store(name: str, shifted: bool = False):
    root = Path(f"/tmp/kdstudy-snapshot-{name}")
    shutil.rmtree(root, ignore_errors=True)
    return fake_study_store(root, seeds=4, shifted=shifted)


async def wait_list(pilot, app, n):
    table = app.screen.query_one("#runs-table")
    await wait_for(pilot, lambda: table.row_count >= n, timeout=30)
    return table


async def test_a_stopped_run_shows_where_it_resumes(tmp_path):
    store, plan = fake_study_store(tmp_path / "runs", seeds=4)
    stopped = next(r for r in store.list_ids() if store.read_status(r).state == "stopped")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_list(pilot, app, len(plan))
        row = app.screen.rows[stopped]
        assert epoch_cell(row) == "1/2" and done_cell(row) == " 50%" and row.best_val is not None  # not 0/2 0% and no best


async def test_the_detail_pane_clears_when_the_last_shown_run_goes(tmp_path):
    store, plan = fake_study_store(tmp_path / "runs", seeds=4)
    failed = next(r for r in store.list_ids() if store.read_status(r).state == "failed")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_list(pilot, app, len(plan))
        screen = app.screen
        screen.run_list.query_text = failed  # a filter that shows only this run
        screen.run_list.show_rows(list(screen.rows.values()))
        await wait_for(pilot, lambda: screen.selected == failed, timeout=10)
        store.remove(failed, archive=True)
        await wait_for(pilot, lambda: screen.selected is None and screen.view is None, timeout=10)
        assert "0 of" in str(screen.query_one("#list-line").render())


async def test_columns_keep_their_widths_and_the_eta_shows_at_80(tmp_path):
    store, plan = fake_study_store(tmp_path / "runs", seeds=2)
    running = next(r for r in store.list_ids() if store.read_status(r).state == "running")
    store.heartbeat(running, progress={"phase": "evaluating val", "epoch": 1, "epochs": 2})
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await wait_list(pilot, app, len(plan))
        screen = app.screen
        assert "eta" in [c.key for c in screen.run_list.columns_shown]
        assert sum(c.width + 2 for c in screen.run_list.columns_shown) <= 80
        assert done_cell(screen.rows[running]) == "eval"  # a word of 5 letters at most: the column never widens
        widths = [col.width for col in table.columns.values()]
        store.heartbeat(running, progress={"phase": "evaluating test (best checkpoint)", "epoch": 2, "epochs": 2})
        await wait_for(pilot, lambda: screen.rows[running].phase.startswith("evaluating test"), timeout=10)
        assert done_cell(screen.rows[running]) == "eval"
        assert [col.width for col in table.columns.values()] == widths


def test_the_done_cell_says_a_phase_in_a_word():
    """Not "dec", "ev va", "ev tr" (issue 26): every phase the trainer announces is a whole word in the cell."""
    from dataclasses import replace

    from kdengine.api import RunRow, State

    row = RunRow(run_id="normal-test_resnet-s0-0", state=State.RUNNING, damaged=False, what="normal", strategy="normal",
                 regime=None, teacher="resnet10t", student="test_resnet", seed=0, device="cpu", data="synthetic",
                 synthetic=True, epochs=4, epoch=2, progress=0.5, best_val=None, test_accuracy=None,
                 baseline_run_id=None, gain=None, reason=None, eta_s=None, phase="")
    words = {phase: done_cell(replace(row, phase=phase)) for phase in (
        "decoding images 300/1451", "evaluating train", "evaluating val", "evaluating test (best checkpoint)",
        "calibrating the memory estimate")}
    assert words == {"decoding images 300/1451": "load", "evaluating train": "eval", "evaluating val": "eval",
                     "evaluating test (best checkpoint)": "eval", "calibrating the memory estimate": "busy"}
    assert done_cell(replace(row, phase="training", progress=0.5)) == " 50%"


async def test_the_worker_dialog_fits_80_columns(tmp_path):
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("w")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "WorkerScreen", timeout=10)
        box = app.screen.query_one("#worker-box")
        for label in box.query("Label"):
            assert label.size.width >= len(str(label.render()).rstrip()), str(label.render())


async def test_results_tabs_scroll_and_an_empty_robustness_table_says_why(tmp_path):
    store, plan = fake_study_store(tmp_path / "runs", seeds=2)
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        screen = await _results(pilot, app)
        for _ in range(len(screen.order)):  # every tab, the last ones included, has its label on screen
            bar = str(screen.query_one("#strategy-bar").render())
            assert f" {screen.current} " in bar
            await pilot.press("]")
    shifted = fake_study_store(tmp_path / "shifted", seeds=2, shifted=True)[0]
    from kdengine import api

    assert api.open(shifted.root).tables().get("robustness") is not None
    empty = fake_study_store(tmp_path / "plain", seeds=2)[0]
    assert api.open(empty.root).tables().get("robustness") is None  # no robustness tab when nothing was shifted


async def _results(pilot, app):
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ResultsScreen", timeout=10)
    screen = app.screen
    await wait_for(pilot, lambda: screen.order, timeout=30)
    return screen


async def test_one_seed_tables_never_promise_an_interval_and_i_says_so(tmp_path):
    from tests.tui_helpers import fake_finished_store

    store, _, _ = fake_finished_store(tmp_path / "runs")
    app = KDStudyApp(store.root, start_workers=False)
    notes = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.notify = lambda message, **kw: notes.append(message)
        await pilot.press("3")
        screen = await _results(pilot, app)
        assert "95% interval" not in str(screen.query_one("#results-note").render())
        await pilot.press("i")
        assert any("no interval" in n for n in notes) and screen.intervals is False


async def test_a_run_is_one_word_in_the_list_and_in_its_detail(tmp_path):
    store, plan = fake_study_store(tmp_path / "runs", seeds=2)
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_list(pilot, app, len(plan))
        screen = app.screen
        teacher = next(r for r in screen.shown if screen.rows[r].what == "teacher+baseline")
        screen.select_run(teacher)
        await pilot.press("i")
        await wait_for(pilot, lambda: screen.view is not None and screen.view.run_id == teacher, timeout=10)
        await wait_for(pilot, lambda: "teacher+baseline" in str(screen.query_one("#details-pane").render()), 10)
        assert screen.query_one("CurvesPane")._pending is None or "teacher+baseline" in str(
            screen.query_one("CurvesPane")._pending[2])


async def test_the_launch_form_remembers_and_shift_tab_never_leaves_it(tmp_path):
    from textual.widgets import Input

    root = tmp_path / "runs"
    app = KDStudyApp(root, start_workers=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        screen = app.screen
        screen.query_one("#epochs", Input).value = "7"
        screen.query_one("#student", Input).value = "resnet10t"
        await pilot.press("f5")
        await wait_for(pilot, lambda: (root / ".kdtui" / "launch.json").is_file(), timeout=30)
    app = KDStudyApp(root, start_workers=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        screen = app.screen
        assert screen.query_one("#epochs", Input).value == "7"
        assert screen.query_one("#student", Input).value == "resnet10t"
        await pilot.press("tab")  # into the form, then back past its first field: it stays in the form
        await pilot.press("shift+tab", "shift+tab", "3")
        assert app.screen is screen and app.screen.__class__.__name__ == "LaunchScreen"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_runs_grouped_by_study(snap_compare, size):
    store, _ = snap_store(f"grouped-{size[0]}")

    async def settle(pilot):
        await pilot.pause(1.0)
        await pilot.press("b")
        await pilot.pause(1.0)

    assert snap_compare(KDStudyApp(store.root, start_workers=False), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_results_robustness_tabs(snap_compare, size):
    store, _ = snap_store(f"robust-{size[0]}", shifted=True)

    async def settle(pilot):
        await pilot.press("3")
        await pilot.pause(1.5)
        for key in ("]", "]", "]", "]", "]"):  # to a robustness tab
            await pilot.press(key)
        await pilot.pause(0.5)

    assert snap_compare(KDStudyApp(store.root, start_workers=False), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_detail_of_a_stopped_run(snap_compare, size):
    store, _ = snap_store(f"stopped-{size[0]}")

    async def settle(pilot):
        await pilot.pause(1.0)
        await pilot.press("slash", *"stopped", "enter")
        await pilot.pause(2.0)

    assert snap_compare(KDStudyApp(store.root, start_workers=False), terminal_size=size, run_before=settle)


def test_looks_labels_wrap_at_the_picture_width_instead_of_being_cut():
    """At 80 columns a picture is 14 wide: "✓ teacher resnet10t: elbow" read "✓ teacher resn" (issue 26)."""
    from kdtui.widgets.looks import label_lines

    lines = [str(t) for t in label_lines(["image", "✓ teacher resnet10t: elbow", "✗ baseline: hand", "this run"], 14)]
    assert all(len(line) == 4 * 14 + 3 * 2 for line in lines)  # every column keeps its picture's width
    columns = [" ".join(line[k * 16:k * 16 + 14].strip() for line in lines).split() for k in range(4)]
    assert columns == [["image"], ["✓", "teacher", "resnet10t:", "elbow"], ["✗", "baseline:", "hand"], ["this", "run"]]
    long = [str(t) for t in label_lines(["✓ teacher seresnext101_32x8d: forearm and more words"], 10)]
    assert len(long) == 3 and long[-1].rstrip().endswith("…")


def test_wrapped_looks_labels_take_their_lines_from_the_pictures():
    """Labels on two or three lines must not push the pictures past the pane's bottom (3 lines above them)."""
    from kdtui.widgets.looks import label_lines, picture_side

    labels = ["image", "✓ teacher resnet10t: elbow", "✗ baseline: hand", "this run"]
    for height in range(8, 40):
        side = picture_side(labels, height)
        assert 8 <= side <= 32
        if side > 8:  # the smallest pictures are kept even where the pane is too short for them
            assert 3 + len(label_lines(labels, side)) + side // 2 <= height, height
    assert picture_side(["image", "map"], 20) == 32  # one label line: the height's whole share (2 * (20 - 4))
