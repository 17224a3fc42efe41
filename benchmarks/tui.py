"""kdtui at study scale: how long a key press takes to answer (cursor moved, detail pane redrawn for the new
run) with a store of about a hundred runs, some of them live (events and heartbeats streaming in)."""
from __future__ import annotations

import asyncio
import json
import os
import multiprocessing
import tempfile
import time
from pathlib import Path


def _stream(store, live: list[str], stop) -> None:
    """Play the workers of the live runs: a step event and a heartbeat each, every 0.1 s."""
    step = 0
    while not stop.is_set():
        step += 1
        for rid in live:
            store.append_event(rid, {"type": "step", "epoch": 1, "step": step, "global_step": step,
                                     "loss": 2.0 / (1 + step / 50)})
            store.heartbeat(rid, progress={"phase": "training", "epoch": 1, "epochs": 2, "step": step,
                                           "steps": 1000, "global_step": step, "total_steps": 2000,
                                           "best_val_accuracy": 0.0, "eta_s": 100.0})
        stop.wait(0.1)


def _stream_process(root: str, live: list[str], stop) -> None:
    from kdengine.store import RunStore

    _stream(RunStore(root), live, stop)


async def _measure(root: Path, presses: int, size: tuple[int, int]) -> list[float]:
    from kdtui.app import KDStudyApp

    app = KDStudyApp(root, start_workers=False)
    times = []
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        table = screen.query_one("#runs-table")
        while table.row_count < 90:
            await pilot.pause(0.1)
        for i in range(presses):
            key = "down" if (i // 20) % 2 == 0 else "up"
            t0 = time.perf_counter()
            await pilot.press(key)
            target = screen.shown[table.cursor_row]
            while not (screen.view is not None and screen.view.run_id == target
                       and screen._drawn_version == screen.view.version and screen.view.version > 0):
                await asyncio.sleep(0.001)
            times.append(time.perf_counter() - t0)
            await pilot.pause(0.05)
    return times


BARE = """
import asyncio, json, sys, time
from textual.app import App
from textual.widgets import DataTable, Footer, Header, Static
class Bare(App):
    def compose(self):
        yield Header(); yield DataTable(cursor_type="row"); yield Static("", id="line"); yield Footer()
    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns(*"abcdefghi")
        for i in range(96):
            table.add_row(*[f"cell {i} {j}" for j in range(9)], key=str(i))
    def on_data_table_row_highlighted(self, event):
        self.query_one("#line").update(str(event.row_key.value), layout=False)
async def main(presses, w, h):
    app = Bare()
    async with app.run_test(size=(w, h)) as pilot:
        await pilot.pause(0.5)
        times = []
        for i in range(presses):
            t0 = time.perf_counter()
            await pilot.press("down" if (i // 20) % 2 == 0 else "up")
            times.append(time.perf_counter() - t0)
            await pilot.pause(0.05)
    print(json.dumps(times))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


def bare_textual(presses: int, size: tuple[int, int]) -> list[float]:
    """The same harness on a bare Textual app (a 96-row table, one line): the floor of a key press here."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", BARE, str(presses), str(size[0]), str(size[1])],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_tui_latency(presses: int = 60, size: tuple[int, int] = (120, 40)) -> dict:
    from tests.tui_helpers import fake_study_store

    with tempfile.TemporaryDirectory() as tmp:
        store, plan = fake_study_store(Path(tmp) / "runs")
        live = [r for r in store.list_ids() if store.read_status(r).state == "running"]
        # the live runs' writers are other processes, as real workers are (a thread here would take the GIL)
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        writer = ctx.Process(target=_stream_process, args=(str(store.root), live, stop), daemon=True)
        writer.start()
        try:
            times = asyncio.run(_measure(store.root, presses, size))
        finally:
            stop.set()
            writer.join(timeout=10)
    bare = sorted(t * 1000 for t in bare_textual(presses, size))
    ms = sorted(t * 1000 for t in times)
    return {"runs": len(plan), "live_runs": len(live), "presses": presses, "terminal": f"{size[0]}x{size[1]}",
            "what": "key press to the detail pane showing the newly highlighted run (Textual's pilot harness)",
            "p50_ms": ms[len(ms) // 2], "p95_ms": ms[int(len(ms) * 0.95) - 1], "max_ms": ms[-1],
            "bare_textual_p50_ms": bare[len(bare) // 2], "bare_textual_p95_ms": bare[int(len(bare) * 0.95) - 1],
            "p50_over_bare": ms[len(ms) // 2] / bare[len(bare) // 2]}


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    print(json.dumps(bench_tui_latency(), indent=2))
