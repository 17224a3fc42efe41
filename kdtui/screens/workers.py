"""Workers: the background workers (pid, host, device, current run), the queue, each study's ETA, the GPUs
(nvidia-smi, no torch) and the tail of each worker's log."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from kdengine.api import gpu_info
from kdengine.api import collect
from kdengine.api import QUEUED, RUNNING
from kdengine.api import list_studies, load_study_record

from ..store_view import fmt_eta

POLL_S = 2.0
LOG_LINES = 6


@dataclass
class WorkersSnapshot:
    workers: list[dict] = field(default_factory=list)
    gpus: list[dict] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    queued_by_device: dict[str, int] = field(default_factory=dict)
    studies: list[tuple[str, int, int, float | None]] = field(default_factory=list)  # name, done, total, eta
    logs: list[tuple[str, list[str]]] = field(default_factory=list)


def study_etas(store, records, workers: int) -> list[tuple[str, int, int, float | None]]:
    """Per study: finished runs, all runs, and the time left: the running runs' own ETAs plus the queued runs at
    the study's mean run duration so far, spread over the workers."""
    by_id = {r.run_id: r for r in records}
    out = []
    for name in list_studies(store):
        record = load_study_record(store, name) or {}
        ids = [p["run_id"] for p in record.get("runs", []) if isinstance(p, dict) and "run_id" in p]
        mine = [by_id[i] for i in ids if i in by_id]
        done = [r for r in mine if r.finished]
        running = [r for r in mine if r.state == RUNNING]
        queued = [r for r in mine if r.state == QUEUED]
        durations = [r.metrics.get("seconds") for r in done if r.metrics.get("seconds")]
        eta = None
        if running or queued:
            left = sum(r.status.progress.get("eta_s") or 0 for r in running)
            if queued and durations:
                left += len(queued) * (sum(durations) / len(durations)) / max(1, workers)
            eta = left if (durations or not queued) else None
        out.append((name, len(done), len(ids), eta))
    return out


def snapshot(store) -> WorkersSnapshot:
    snap = WorkersSnapshot(workers=store.live_workers(), gpus=gpu_info())
    records = collect(store)
    for r in records:
        snap.states[r.state] = snap.states.get(r.state, 0) + 1
        if r.state == QUEUED:
            device = r.status.device
            snap.queued_by_device[device] = snap.queued_by_device.get(device, 0) + 1
    snap.studies = study_etas(store, records, len(snap.workers))
    logs = sorted(store.workers_dir().glob("worker-*.log"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if store.workers_dir().is_dir() else []
    for path in logs[:3]:
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - 8192))
                tail = fh.read().decode("utf-8", "replace").splitlines()[-LOG_LINES:]
        except OSError:
            tail = []
        snap.logs.append((path.name, tail))
    return snap


def render(snap: WorkersSnapshot):
    parts = []
    workers = Table(title="Workers", title_justify="left", box=None, header_style="bold", padding=(0, 1))
    for col in ("pid", "host", "device", "GPU", "current run", "beat"):
        workers.add_column(col, no_wrap=True)
    for w in snap.workers:
        age = time.time() - float(w.get("heartbeat", 0))
        workers.add_row(str(w.get("pid")), str(w.get("host")), str(w.get("device")),
                        str(w.get("cuda_visible_devices") or "–"), str(w.get("current") or "idle"), f"{age:.0f}s")
    parts.append(workers if snap.workers else Text("No worker is running: press w to start one.", style="yellow"))
    states = " · ".join(f"{n} {s}" for s, n in sorted(snap.states.items())) or "no runs"
    queue = Text(f"\nQueue: {states}", style="bold")
    if snap.queued_by_device:
        queue.append("  (queued for " + ", ".join(f"{d}: {n}" for d, n in sorted(snap.queued_by_device.items())) + ")",
                     style="dim")
    parts.append(queue)
    for name, done, total, eta in snap.studies:
        left = "done" if done == total else (f"ETA ~{fmt_eta(eta)}" if eta is not None else "ETA: after its first run")
        parts.append(Text(f"study {name}: {done}/{total} finished · {left}"))
    if snap.gpus:
        gpus = Table(title="\nGPUs", title_justify="left", box=None, header_style="bold", padding=(0, 1))
        for col in ("#", "name", "use", "memory"):
            gpus.add_column(col, no_wrap=True)
        for g in snap.gpus:
            gpus.add_row(str(g["index"]), g["name"], f"{g['utilization']}%",
                         f"{g['memory_used_mib'] / 1024:.1f} / {g['memory_total_mib'] / 1024:.1f} GiB")
        parts.append(gpus)
    else:
        parts.append(Text("\nGPUs: none visible (nvidia-smi not found or no device): runs train on the CPU.",
                          style="dim"))
    for name, tail in snap.logs:
        parts.append(Text(f"\n{name}", style="bold"))
        parts.append(Text("\n".join(tail) or "(empty)", style="dim"))
    return Group(*parts)


class WorkersScreen(Screen):
    BINDINGS = [Binding("w", "start_worker", "Worker")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="workers-box"):
            yield Static("reading the workers…", id="workers-view")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.poll)
        self.call_after_refresh(self.poll)

    def on_screen_resume(self) -> None:
        self.call_after_refresh(self.poll)  # what changed while another screen was shown, now: not at the next tick

    async def poll(self) -> None:
        if not self.is_current:
            return
        try:
            snap = await asyncio.to_thread(snapshot, self.app.store)
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.query_one("#workers-view", Static).update(Text(f"cannot read the workers: {exc}", style="red"))
            return
        self.snapshot = snap
        self.query_one("#workers-view", Static).update(render(snap))

    def action_start_worker(self) -> None:
        self.app.ask_worker()
