"""Nothing reads the store on kdtui's UI thread: with every use case of the store made slow (a sleep), the app is
driven through each screen, pane, dialog and action; no use case runs on the UI thread, no frame and no key waits
for one (a key is answered while its screen's read is under way), and each screen shows at once, saying that its
data is coming."""
from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time

import pytest
from textual import events

from kdengine import api
from kdtui.app import KDStudyApp
from tests.tui_helpers import fake_finished_store, wait_for

SLOW_S = 0.6
KEY_S = 0.4  # a key answered within this, while its screen's reads (SLOW_S a call) are under way


def slow_store(monkeypatch) -> list[tuple[str, bool]]:
    """Every use case of ``api.Store`` sleeps SLOW_S first; returns the calls made, as (name, on the UI thread)."""
    calls: list[tuple[str, bool]] = []
    for name, member in list(vars(api.Store).items()):
        use_case = member.__func__ if isinstance(member, staticmethod) else member
        if name.startswith("_") or not callable(use_case):
            continue

        def slowed(*args, __name=name, __use_case=use_case, **kwargs):
            calls.append((__name, threading.current_thread() is threading.main_thread()))
            time.sleep(SLOW_S)
            return __use_case(*args, **kwargs)

        slowed = functools.wraps(use_case)(slowed)
        monkeypatch.setattr(api.Store, name, staticmethod(slowed) if isinstance(member, staticmethod) else slowed)
    return calls


@pytest.fixture
def frozen_heap():
    """The suite's earlier tests leave a large heap behind: a full collection of it, on whichever thread allocates
    at the time, held a frame over a second on CI's 2 cores. Frozen, it is out of the collector's reach, and the gaps
    measured are the app's own."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.mark.serial  # frame gaps: measured alone on the machine (make test runs it after the rest)
async def test_no_frame_waits_for_the_store(tmp_path, monkeypatch, frozen_heap):
    store, student, _ = fake_finished_store(tmp_path / "runs")
    calls = slow_store(monkeypatch)
    app = KDStudyApp(store.root, start_workers=False)
    gaps: list[float] = []
    async with app.run_test(size=(100, 30)) as pilot:
        stop = asyncio.Event()

        async def ticker():  # a frame every 20 ms: the longest gap is the longest the UI thread was held
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.02)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async def answered(key: str, done) -> float:
            """How long a key takes to be answered (``done()``), posted straight to the app (no pilot, which waits
            for the app to settle)."""
            t0 = time.perf_counter()
            app.post_message(events.Key(key, key if len(key) == 1 else None))
            while not done() and time.perf_counter() - t0 < 10:
                await asyncio.sleep(0.01)
            return time.perf_counter() - t0

        task = asyncio.create_task(ticker())
        keys: dict[str, float] = {}
        screen = app.screen
        assert "reading the run store" in str(screen.query_one("#list-line").render())  # shown before the read
        await wait_for(pilot, lambda: len(screen.rows) == 3, timeout=30)
        await pilot.press("down", "down")
        keys["runs: b while the run is read"] = await answered("b", lambda: screen.run_list.by_study)
        await wait_for(pilot, lambda: screen.view is not None and screen.view.run_id == screen.selected, timeout=30)
        await pilot.press("i")  # the Details pane reads the run's facts
        await wait_for(pilot, lambda: "settings:" in str(screen.query_one("#details-pane").render()), timeout=30)
        await pilot.press("l")  # the Looks pane reads its maps
        await wait_for(pilot, lambda: "No maps yet" in str(screen.query_one("#looks-pane").render()), timeout=30)
        for pressed in (("m",), ("p",), ("c",), ("x",), ("s",), ("escape",), ("d",)):
            await pilot.press(*pressed)
            await pilot.pause(0.1)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen", timeout=30)
        await pilot.press("escape")
        await pilot.press("3")  # Results: the tables are built in a worker; the screen says they are coming
        results = app.screen
        assert results.__class__.__name__ == "ResultsScreen"
        assert "building the tables" in str(results.query_one("#results-note").render())
        keys["results: n while the tables are built"] = await answered("n", lambda: results.notes_open)
        await wait_for(pilot, lambda: results.tables is not None, timeout=60)
        await pilot.press("v", "m")
        await pilot.press("4")
        assert "reading the workers" in str(app.screen.query_one("#workers-view").render())
        await wait_for(pilot, lambda: getattr(app.screen, "snapshot", None) is not None, timeout=30)
        await pilot.press("2")
        form = app.screen
        keys["launch: f2 while the data is checked"] = await answered("f2", lambda: form.query_one("#device").value
                                                                      == "cpu")
        await wait_for(pilot, lambda: "classes" in str(form.query_one("#data-summary").render()), timeout=60)
        await pilot.press("f5")  # built and checked in a worker (a teacher may be a run of the store)
        await wait_for(pilot, lambda: "queued" in str(form.query_one("#form-message").render()), timeout=60)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", timeout=60)  # launched
        await wait_for(pilot, lambda: len(app.screen.rows) > 3, timeout=60)  # its new runs are in the list
        await pilot.press("w")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "WorkerScreen", timeout=30)
        await pilot.press("escape")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        stop.set()
        await task
    # the one use case the app calls as it starts, before any frame: the thesis preset, a file shipped with kdstudy
    on_ui = sorted({name for name, ui in calls if ui} - {"study_file"})
    assert not on_ui, f"store use cases called on the UI thread: {on_ui}"
    used = {name for name, _ in calls}
    assert {"rows", "detail", "facts", "looks", "what_goes", "tables", "studies", "workers", "check_data",
            "spec", "check", "launch", "load_settings", "save_settings", "gpu_count"} <= used, used
    print("KEYS", keys, "GAP", max(gaps)); assert all(t < KEY_S for t in keys.values()), keys
    assert max(gaps) < SLOW_S, f"a frame waited {max(gaps):.2f} s"  # a use case on the UI thread holds it SLOW_S


def test_one_idiom_for_slow_work():
    """Slow work in kdtui is a ``@work(thread=True)`` method that posts its result as a message: no other way of
    running work beside the UI (``asyncio.to_thread`` awaited in a handler holds its screen's messages meanwhile;
    ``call_from_thread`` and ``run_worker`` are the other two idioms the TUI once mixed)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "kdtui"
    others, workers = [], 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for pattern in (r"to_thread\(", r"run_in_executor\(", r"call_from_thread\(", r"run_worker\(",
                        r"@work\((?![^)]*thread=True)"):
            others += [f"{path.relative_to(root)}: {m.group(0)}" for m in re.finditer(pattern, text)]
        workers += len(re.findall(r"@work\(thread=True", text))
    assert others == [] and workers >= 10
