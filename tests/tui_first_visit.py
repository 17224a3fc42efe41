"""Run as a script (a fresh interpreter: nothing imported yet, as when a user starts kdtui): drive kdtui to Results and
then Launch on a small finished store, a frame ticking every 20 ms, and print as JSON, per screen, how long its first
frame took after the key, the longest gap between frames until its data came, and what it said meanwhile
(tests/test_tui_round3.py reads it)."""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from textual import events

from kdtui.app import KDStudyApp
from tests.tui_helpers import fake_finished_store

SCREENS = {"3": ("ResultsScreen", "#results-note", lambda s: s.tables is not None),
           "2": ("LaunchScreen", "#data-summary", lambda s: "classes" in str(s.query_one("#data-summary").render()))}


async def visit(app, key: str) -> dict:
    name, note, done = SCREENS[key]
    frames: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.02)
            frames.append(time.perf_counter())

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    app.post_message(events.Key(key, key))
    shown, said = None, ""
    while time.perf_counter() - t0 < 60:
        await asyncio.sleep(0.01)
        screen = app.screen
        if screen.__class__.__name__ != name or not screen.is_mounted:
            continue
        if shown is None:
            shown = time.perf_counter() - t0
            said = str(screen.query_one(note).render())
        if done(screen):
            break
    stop.set()
    await task
    marks = [t0, *frames]
    return {"shown_s": shown, "said": said, "done_s": time.perf_counter() - t0,
            "max_gap_s": max(b - a for a, b in zip(marks, marks[1:]))}


async def main() -> None:
    store, _, _ = fake_finished_store(Path(tempfile.mkdtemp()) / "runs")
    app = KDStudyApp(store.root, start_workers=False)
    out = {}
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause(1.0)
        for key in ("3", "2"):
            out[SCREENS[key][0]] = await visit(app, key)
            await pilot.pause(0.5)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
