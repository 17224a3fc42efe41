"""kdtui: pilot tests for each screen, live launch through a detached worker, re-attaching, snapshots."""
from __future__ import annotations

from rich.text import Text

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


from kdengine.store import RunStore
from kdtui.app import KDStudyApp
from tests.conftest import SMALL_SYNTH
from tests.tui_helpers import fake_finished_store, kill_workers, wait_for

SIZE = (80, 24)


def text_of(widget) -> str:
    """The plain text a Static shows (Rich renderables rendered through a recording console)."""
    import io

    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


async def export_with_keys(pilot, out):
    """Press e, type the folder, press enter; wait for the export to finish."""
    await pilot.press("e")
    await pilot.pause(0.2)
    pilot.app.screen.query_one("#export-path").value = str(out)
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    return out


def test_tui_never_imports_torch(tmp_path):
    fake_finished_store(tmp_path / "runs")
    script = f"""
import asyncio, sys
from kdtui.app import KDStudyApp
async def main():
    app = KDStudyApp({str(tmp_path / 'runs')!r}, start_workers=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        assert "pandas" not in sys.modules, "the first screen waited for pandas"  # Results builds tables with it
        for keys in (("m",), ("p",), ("2",), ("escape", "3"), ("question_mark",)):
            await pilot.press(*keys)
            await pilot.pause(0.5)
        await app.workers.wait_for_complete()
    assert "torch" not in sys.modules, "torch was imported"
    assert "timm" not in sys.modules and "albumentations" not in sys.modules
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


async def test_runs_screen_shows_runs_curves_confusion_and_report(tmp_path):
    store, student, _ = fake_finished_store(tmp_path / "runs")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#runs-table")
        await wait_for(pilot, lambda: table.row_count == 3)
        table.move_cursor(row=table.get_row_index(student.run_id))
        await wait_for(pilot, lambda: app.screen.view is not None and app.screen.view.run_id == student.run_id
                       and app.screen.view.metrics is not None)
        view = app.screen.view
        # at 80x24 the panes take two thirds of the height: the curves keep room to read
        assert app.screen.query_one("#curves-pane").size.height >= 10
        assert view.curves.epochs == [1, 2] and len(view.teacher_ids) == 1
        await pilot.press("m")
        await pilot.pause(0.3)
        confusion = text_of(app.screen.query_one("#confusion-pane"))
        assert "elbow" in confusion and "test, best checkpoint" in confusion
        await pilot.press("p")
        await pilot.pause(0.3)
        report = text_of(app.screen.query_one("#report-pane"))
        assert "precision" in report and "wrist" in report
        await pilot.press("c")
        assert app.screen.query_one("#panes").active == "curves"


async def test_launch_form_validates_inline(tmp_path):
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        screen = app.screen
        data = screen.query_one("#source")
        data.value = "/no/such/place"
        await wait_for(pilot, lambda: "no such file" in text_of(screen.query_one("#data-summary")), timeout=10)
        await pilot.press("f5")
        await wait_for(pilot, lambda: "fix the data first" in text_of(screen.query_one("#form-message")), timeout=10)
        assert RunStore(tmp_path / "runs").list_ids() == []
        data.value = SMALL_SYNTH
        await wait_for(pilot, lambda: "7 classes" in text_of(screen.query_one("#data-summary")), timeout=30)
        screen.query_one("#epochs").value = "0"
        await pilot.press("f5")
        await wait_for(pilot, lambda: "train.epochs must lie in [1, 100000], got 0"
                       in text_of(screen.query_one("#form-message")), timeout=10)
        assert screen.query_one("#epochs").has_class("-invalid")
        screen.query_one("#epochs").value = "2"
        screen.query_one("#strategy").value = "reverse"
        await wait_for(pilot, lambda: "reverse KD expects a smaller teacher"
                       in text_of(screen.query_one("#form-message")), timeout=10)
        # presets fill the settings in one key press
        await pilot.press("escape", "f3")
        assert screen.query_one("#lr").value == "0.0001" and screen.query_one("#image_size").value == "224"
        assert screen.query_one("#pretrained").value is True and screen.query_one("#batch_size").value == "16"
        await pilot.press("f2")
        assert screen.query_one("#image_size").value == "64" and screen.query_one("#device").value == "cpu"
        assert RunStore(tmp_path / "runs").list_ids() == []


async def test_results_screen_tables_and_export(tmp_path):
    store, student, baseline = fake_finished_store(tmp_path / "runs")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.current == "normal")
        table = app.screen.query_one("#results-table")
        columns = [str(c.label) for c in table.columns.values()]
        assert columns == ["student", "split", "resnet18", "baseline", "gain resnet18"]
        test_row = [str(c) for c in table.get_row_at(2)]
        # n in every cell, as every front end writes it (issue 35)
        assert test_row == ["test_resnet", "test", "0.7600 (n=1)", "0.7200 (n=1)", "+0.0400 (n=1)"]
        await pilot.press("]")
        assert app.screen.current == "models"
        await pilot.press("m")  # the metric: macro-F1 (the fake runs have accuracy - 0.01)
        await wait_for(pilot, lambda: app.screen.metric == "macro_f1" and app.screen.tables.metric == "macro_f1")
        await pilot.press("[")
        assert app.screen.current == "normal"
        assert [str(c) for c in table.get_row_at(2)][2:4] == ["0.7500 (n=1)", "0.7100 (n=1)"]
        out = await export_with_keys(pilot, tmp_path / "export")
        await wait_for(pilot, lambda: any("wrote 3 CSV and 3 Markdown files" in str(n.message)
                                          for n in app._notifications), timeout=10)
        assert {p.name for p in out.iterdir()} == {"runs.csv", "models.csv", "students_normal.csv", "models.md",
                                                   "students_normal.md", "tables.md"}
        # the same files as `kdengine table`
        from kdengine.cli import main

        assert main(["table", "--runs-dir", str(store.root), "--out", str(tmp_path / "cli"), "--format", "both",
                     "--metric", "macro_f1"]) == 0
        for name in ("runs.csv", "students_normal.csv", "tables.md"):
            assert (out / name).read_text() == (tmp_path / "cli" / name).read_text()


async def test_bad_export_path_does_not_crash(tmp_path):
    store, _, _ = fake_finished_store(tmp_path / "runs")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        from kdtui.messages import ExportRequested

        app.post_message(ExportRequested(path=str(blocker / "sub")))
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), timeout=10)
        await pilot.pause(0.1)
        assert app.is_running
        failed = [n for n in app._notifications if n.severity == "error"]
        assert len(failed) == 1 and "export failed" in failed[0].message and "file" in failed[0].message


async def test_help_and_palette_commands(tmp_path):
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Runs", "Launch", "Results", "Workers", "Export tables", "Start worker", "Stop run", "CPU-quick preset",
                "Thesis preset", "Run a study file", "Toggle ANSI theme", "Help"} <= titles
        app.action_toggle_ansi()
        await pilot.pause(0.2)
        assert app.theme == "ansi-dark"


async def test_launch_live_then_quit_then_reattach(tmp_path):
    """Launch a normal-KD run from the form into a detached worker, watch it update, quit the TUI while it
    runs, then re-attach a new TUI and see it finish."""
    runs = tmp_path / "runs"
    app = KDStudyApp(runs)
    pids: list[int] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
            s = app.screen
            s.query_one("#source").value = SMALL_SYNTH
            await pilot.press("escape", "f2")
            s.query_one("#teacher").value = "test_efficientnet"
            s.query_one("#student").value = "test_resnet"
            s.query_one("#image_size").value = "32"
            s.query_one("#epochs").value = "6"  # long enough that the student cannot finish before we quit
            await wait_for(pilot, lambda: "7 classes" in text_of(s.query_one("#data-summary")), timeout=30)
            await pilot.press("f5")
            await wait_for(pilot, lambda: app.spawned_workers, timeout=30)  # the checks decode the data, as train does
            pids = list(app.spawned_workers)
            assert app.screen.__class__.__name__ == "RunsScreen"
            store = RunStore(runs)
            teacher_id = next(r for r in store.list_ids() if r.startswith("ce-"))
            student_id = next(r for r in store.list_ids() if r.startswith("normal-"))
            # the selected run's curve and confusion matrix update live (teacher first)
            app.screen.select_run(teacher_id)
            await wait_for(pilot, lambda: app.screen.view is not None and app.screen.view.curves.epochs, timeout=120)
            await pilot.press("m")
            await wait_for(pilot, lambda: "elbow" in text_of(app.screen.query_one("#confusion-pane")), timeout=10)
            app.screen.select_run(student_id)
        # the TUI has quit; the worker goes on in its own session
        quit_at = time.time()
        worker = pids[0]
        assert os.getsid(worker) != os.getsid(0)
        os.kill(worker, 0)
        assert store.read_status(student_id).state in ("queued", "running")

        app2 = KDStudyApp(runs, start_workers=False)
        async with app2.run_test(size=SIZE) as pilot:
            table = app2.screen.query_one("#runs-table")
            await wait_for(pilot, lambda: table.row_count == 3)  # teacher, student, the student's baseline
            app2.screen.select_run(student_id)
            await wait_for(pilot, lambda: app2.screen.rows.get(student_id) is not None
                           and app2.screen.rows[student_id].state == "finished", timeout=180)
            await wait_for(pilot, lambda: app2.screen.view is not None and app2.screen.view.metrics is not None,
                           timeout=10)
            assert app2.screen.view.curves.epochs == [1, 2, 3, 4, 5, 6]
            # metrics and the best checkpoint make a run read as finished a moment before its lifecycle event lands
            def finished_event():
                return next((e for e in store.read_events(student_id)[0] if e.get("state") == "finished"), None)
            await wait_for(pilot, lambda: finished_event() is not None, timeout=10)
            finished_at = finished_event()["t"]
            assert finished_at > quit_at  # it finished after the TUI that launched it had quit
            baseline_id = next(r for r in store.list_ids() if r.startswith("ce-test_resnet-"))
            await wait_for(pilot, lambda: store.read_status(baseline_id).state == "finished", timeout=180)
            await pilot.press("3")
            await wait_for(pilot, lambda: app2.screen.current == "normal", timeout=10)
            results = app2.screen.query_one("#results-table")
            # the student's baseline and the gain over it stand beside the KD result
            await wait_for(pilot, lambda: results.row_count == 3 and str(results.get_row_at(2)[3]) != "–", timeout=10)
            test_row = [str(c) for c in results.get_row_at(2)]
            assert test_row[1] == "test" and test_row[4].startswith(("+", "-"))
    finally:
        kill_workers(pids)


SNAP_STORE = Path("/tmp/kdstudy-snapshot-store")


def _snap_store():
    import shutil

    shutil.rmtree(SNAP_STORE, ignore_errors=True)
    fake_finished_store(SNAP_STORE)
    return SNAP_STORE


def test_snapshot_runs_80x24(snap_compare):
    app = KDStudyApp(_snap_store(), start_workers=False)

    async def settle(pilot):
        await pilot.pause(1.0)
        await pilot.press("down", "down")
        await pilot.pause(1.0)

    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_snapshot_launch_80x24(snap_compare):
    app = KDStudyApp(_snap_store(), start_workers=False)

    async def settle(pilot):
        await pilot.press("2")
        await pilot.pause(0.5)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


async def test_results_screen_shows_a_study(tmp_path):
    from kdengine.study.expand import expand
    from kdengine.study.registry import save_study
    from kdengine.study.schema import load_study

    store, student, baseline = fake_finished_store(tmp_path / "runs")
    toml = tmp_path / "mini.toml"
    toml.write_text('seeds = [0]\n[data]\nimage_size = 32\n[train]\nepochs = 2\n'
                    '[[experiments]]\nstrategy = "normal"\nteachers = ["resnet18"]\nstudents = ["test_resnet"]\n')
    study = load_study(str(toml))
    plan = expand(study)
    assert {p.run_id for p in plan} == set(store.list_ids())  # the study's runs are the fake store's runs
    save_study(store, study, plan)
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.current == "normal")
        await pilot.press("v")
        await wait_for(pilot, lambda: app.screen.view_name == "mini" and "models" in app.screen.order)
        table = app.screen.query_one("#results-table")
        assert [str(c.label) for c in table.columns.values()] == ["student", "split", "resnet18", "baseline", "gain resnet18"]
        test_row = [str(c) for c in table.get_row_at(2)]
        # n in every cell, as every front end writes it (issue 35)
        assert test_row == ["test_resnet", "test", "0.7600 (n=1)", "0.7200 (n=1)", "+0.0400 (n=1)"]
        assert "One seed" in text_of(app.screen.query_one("#results-note"))
        await pilot.press("i")  # intervals on: with one seed there are none to show
        assert [str(c) for c in table.get_row_at(2)][2] == "0.7600 (n=1)"
        await pilot.press("[")
        assert app.screen.current == "models"
        out = await export_with_keys(pilot, tmp_path / "export")
        assert {"models.csv", "students_normal.csv", "runs.csv", "tables.md"} <= {p.name for p in out.iterdir()}


async def test_launch_checks_models_as_the_cli_does(tmp_path):
    """A mistyped model name is refused before anything is queued (it once became a teacher that failed forever)."""
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        s = app.screen
        s.query_one("#source").value = SMALL_SYNTH
        await wait_for(pilot, lambda: "7 classes" in text_of(s.query_one("#data-summary")), timeout=30)
        s.query_one("#teacher").value = "resnet181"
        await pilot.press("escape", "f5")
        await wait_for(pilot, lambda: "did you mean resnet18" in text_of(s.query_one("#form-message")), timeout=60)
        assert RunStore(tmp_path / "runs").list_ids() == []


async def test_a_worker_answer_for_a_field_that_is_gone_is_dropped(tmp_path):
    """The launch form's checks run in worker threads and put their answer on screen from the UI thread
    (LaunchScreen._say); an answer that comes when its field is gone (the app closing: make test once failed
    with NoMatches raised in the data check's thread) is dropped, and the app lives on."""
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        s = app.screen
        s._say("#data-summary", Text("an answer"))
        assert text_of(s.query_one("#data-summary")).strip() == "an answer"
        await s.query_one("#data-summary").remove()
        s._say("#data-summary", Text("too late"))  # nothing to show it in: no NoMatches
        await pilot.pause(0.1)
        assert app.is_running


# -- a hundred runs ----------------------------------------------------------------------------------------------
async def hundred(tmp_path, size=(100, 40)):
    from tests.tui_helpers import fake_study_store

    store, plan = fake_study_store(tmp_path / "runs")
    app = KDStudyApp(store.root, start_workers=False)
    return store, plan, app


async def wait_rows(pilot, app, n):
    table = app.screen.query_one("#runs-table")
    await wait_for(pilot, lambda: table.row_count == n, timeout=30)
    return table


async def test_run_list_filters_sorts_groups_and_jumps(tmp_path):
    store, plan, app = await hundred(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        table = await wait_rows(pilot, app, len(plan))
        screen = app.screen
        assert table.size.height >= 12  # it fills the height it has
        await pilot.press("end")
        assert table.cursor_row == len(plan) - 1
        # the detail pane shows the highlighted run
        await wait_for(pilot, lambda: screen.view is not None and screen.view.run_id == screen.shown[-1], timeout=10)
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("slash")
        for ch in "failed":
            await pilot.press(ch)
        await wait_for(pilot, lambda: 0 < table.row_count < len(plan))
        assert all(screen.rows[r].state == "failed" for r in screen.shown)
        await pilot.press("enter", "escape")
        await wait_for(pilot, lambda: table.row_count == len(plan))
        await pilot.press("home", "g")  # the next running run
        running = [r for r in screen.shown if screen.rows[r].state == "running"]
        assert running and screen.shown[table.cursor_row] == running[0]
        await pilot.press("g")
        assert screen.shown[table.cursor_row] == running[1]
        await pilot.press("o")  # sort by state
        assert screen.run_list.sort_key == "state"
        states = [screen.rows[r].state for r in screen.shown]
        assert states == sorted(states)
        await pilot.press("b")  # grouped: a header row per study, and the study column shows (issue 18)
        columns = [c.key for c in screen.run_list.columns_shown]
        assert screen.run_list.by_study and screen.shown[0] == "group:demo" and "study" in columns
        assert all(screen.rows[r].studies == ("demo",) for r in screen.shown[1:])
        assert str(table.get_row("group:demo")[columns.index("who")]).startswith("▸ demo")


async def test_stop_asks_first_retry_and_delete(tmp_path):
    store, plan, app = await hundred(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        table = await wait_rows(pilot, app, len(plan))
        screen = app.screen
        await pilot.press("g")
        running = screen.shown[table.cursor_row]
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen", timeout=10)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen, timeout=10)
        assert not store.stop_requested(running)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen", timeout=10)
        await pilot.press("y")
        await wait_for(pilot, lambda: store.stop_requested(running), timeout=10)
        # retry a stopped run: it resumes
        stopped = next(r for r in screen.shown if screen.rows[r].state == "stopped" and r != running)
        table.move_cursor(row=screen.shown.index(stopped))
        await pilot.pause(0.2)
        await pilot.press("r")
        await wait_for(pilot, lambda: store.read_status(stopped).state == "queued", timeout=10)
        # retry a failed run (a study's, on an unreadable image: queued again, with a word that it may fail again)
        failed = next(r for r in screen.shown if screen.rows[r].state == "failed")
        table.move_cursor(row=screen.shown.index(failed))
        await pilot.pause(0.2)
        await pilot.press("r")
        await wait_for(pilot, lambda: store.read_status(failed).state == "queued", timeout=10)
        await wait_for(pilot, lambda: any("unless the file was mended" in str(n.message)
                                          for n in app._notifications), timeout=10)
        # delete a finished teacher: the dialog says what goes (its size, the students that use it)
        teacher = next(r for r in screen.shown if r.startswith("ce-resnet10t-") and screen.rows[r].state == "finished")
        table.move_cursor(row=screen.shown.index(teacher))
        await pilot.pause(0.2)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen", timeout=10)
        details = text_of(app.screen.query_one("#confirm-details"))
        assert "MB on disk" in details and "use it as a teacher" in details
        await pilot.press("d")
        await wait_for(pilot, lambda: not store.exists(teacher), timeout=10)
        await wait_rows(pilot, app, len(plan) - 1)


async def test_screen_keys_never_type_into_a_field(tmp_path):
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        from textual.widgets import Input

        assert not isinstance(app.screen.focused, Input)  # the form opens without a focused text field
        await pilot.press("1")
        assert app.screen.__class__.__name__ == "RunsScreen"
        await pilot.press("2")
        epochs = app.screen.query_one("#epochs")
        epochs.focus()
        await pilot.press("1")  # typing in a field: it types, it does not switch
        assert epochs.value == "1" and app.screen.__class__.__name__ == "LaunchScreen"  # (focus selects the text)
        await pilot.press("escape", "1")
        assert app.screen.__class__.__name__ == "RunsScreen"


async def test_workers_screen_and_compare(tmp_path):
    store, plan, app = await hundred(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        table = await wait_rows(pilot, app, len(plan))
        screen = app.screen
        student = next(r for r in screen.shown if r.startswith("normal-") and screen.rows[r].state == "finished")
        table.move_cursor(row=screen.shown.index(student))
        await wait_for(pilot, lambda: screen.view is not None and screen.view.run_id == student
                       and screen.view.metrics is not None)
        await wait_for(pilot, lambda: len(screen.detail.current.overlays) == 2)
        labels = [label for label, _ in screen.detail.current.overlays]
        assert labels == ["T resnet10t", "B test_resnet"]  # its teacher's and its baseline's curves
        await pilot.press("x")  # pin it; its curves overlay the next run's
        other = next(r for r in screen.shown if r.startswith("reverse-") and screen.rows[r].state == "finished")
        table.move_cursor(row=screen.shown.index(other))
        await wait_for(pilot, lambda: screen.view is not None and screen.view.run_id == other
                       and screen.detail.current.pinned is not None)
        assert screen.detail.current.pinned.run_id == student
        queued = next(r for r in screen.shown if screen.rows[r].state == "queued")
        table.move_cursor(row=screen.shown.index(queued))
        await wait_for(pilot, lambda: "press w to start one" in text_of(screen.query_one("#run-line")))
        await pilot.press("4")
        await wait_for(pilot, lambda: getattr(app.screen, "snapshot", None) is not None)
        view = text_of(app.screen.query_one("#workers-view"))
        assert "No worker is running" in view and "study demo:" in view and "queued" in view


async def test_screenshot_goes_to_a_folder_that_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home-without-downloads"))
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        saved = app.deliver_screenshot()
        await pilot.pause(0.1)
        assert saved and Path(saved).is_file() and Path(saved).parent == tmp_path / "runs" / "screenshots"
        assert any(saved in str(n.message) for n in app._notifications)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_snapshot_hundred_runs(snap_compare, size):
    from tests.tui_helpers import fake_study_store

    store, _ = fake_study_store(_snap_root(f"hundred-{size[0]}"))
    app = KDStudyApp(store.root, start_workers=False)

    async def settle(pilot):
        await pilot.pause(1.0)
        await pilot.press("g")
        await pilot.pause(1.0)

    assert snap_compare(app, terminal_size=size, run_before=settle)


def _snap_root(name):
    import shutil

    root = Path(f"/tmp/kdstudy-snapshot-{name}")
    shutil.rmtree(root, ignore_errors=True)
    return root


async def test_worker_dialog_chooses_device_and_packing(tmp_path, monkeypatch):
    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    asked = []
    monkeypatch.setattr(app, "start_training_workers",
                        lambda device="auto", runs_per_gpu="1": asked.append((device, runs_per_gpu)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "WorkerScreen", timeout=10)
        await pilot.press("g", "4", "enter")
        await wait_for(pilot, lambda: asked == [("cuda", "4")], timeout=10)
        await pilot.press("w")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "WorkerScreen", timeout=10)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", timeout=10)
        assert asked == [("cuda", "4")]


def test_axis_ticks_are_honest_at_any_height():
    from kdtui.widgets.curves import fitting_ticks, nice_ticks

    acc = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert fitting_ticks(acc, 12) == acc
    assert fitting_ticks(acc, 6) == [0.0, 0.5, 1.0]  # never 1 .83 .67 .33 ... with .50 dropped
    assert fitting_ticks(acc, 3) == [0.0, 1.0]
    ticks = nice_ticks(0.36, 1.48)
    assert ticks[0] <= 0.36 and ticks[-1] >= 1.48 and len(ticks) <= 7
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and steps.pop() in (0.1, 0.2, 0.25, 0.5)
    # the ticks always cover the data: a value beyond the last one is clipped away by plotext, and a series left
    # with no point crashed its legend (a stopped KD run: val 2.2 above ticks ending at 2.0)
    for lo, hi in ((1.1, 2.2), (0.3, 0.31), (1.8, 2.1), (0.0, 9.7)):
        ticks = nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi


async def test_results_cell_under_the_cursor_shows_its_seeds_and_p_values(tmp_path):
    """A gain cell in full: n, each seed's gain, the raw and adjusted p-value and what its interval covers."""
    root = tmp_path / "runs"
    fake_finished_store(root, seed=0, accuracies=(0.8, 0.70, 0.75))
    store, _, _ = fake_finished_store(root, seed=1, accuracies=(0.8, 0.72, 0.73))
    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.current == "normal")
        table = app.screen.query_one("#results-table")
        table.move_cursor(row=2, column=4)  # the test row's gain
        note = app.screen.query_one("#results-note")
        await wait_for(pilot, lambda: "gain resnet18: n=2" in str(note.render()))
        text = str(note.render()).replace("\n", " ")
        assert "s0:+0.0500 s1:+0.0100" in text and "adjusted" in text and "over seeds only" in text
