"""Workers: the background workers (pid, host, device, current run), the queue, each study's ETA, the GPUs
(nvidia-smi, no torch) and the tail of each worker's log, read off the UI thread every two seconds."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from kdengine import api
from kdengine.api import State

from ..store_view import fmt_eta
from . import register_screen

POLL_S = 2.0
LOG_LINES = 6


@dataclass
class WorkersSnapshot:
    workers: list[dict] = field(default_factory=list)
    gpus: list[dict] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    queued_by_device: dict[str, int] = field(default_factory=dict)
    studies: list[api.StudyProgress] = field(default_factory=list)
    logs: list[tuple[str, list[str]]] = field(default_factory=list)


def snapshot(store: api.Store) -> WorkersSnapshot:
    """What the screen shows, read from the store (in a worker thread)."""
    snap = WorkersSnapshot(workers=store.workers(), gpus=store.gpus(), studies=store.study_progress(),
                           logs=store.worker_logs(3, LOG_LINES))
    for r in store.rows():
        snap.states[r.state] = snap.states.get(r.state, 0) + 1
        if r.state == State.QUEUED:
            snap.queued_by_device[r.asked_device] = snap.queued_by_device.get(r.asked_device, 0) + 1
    return snap


class SnapshotRead(Message):
    def __init__(self, snap: WorkersSnapshot | None, error: Exception | None = None) -> None:
        super().__init__()
        self.snap = snap
        self.error = error


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
    for st in snap.studies:
        left = "done" if st.finished == st.total else (f"ETA ~{fmt_eta(st.eta_s)}" if st.eta_s is not None
                                                        else "ETA: after its first run")
        parts.append(Text(f"study {st.name}: {st.finished}/{st.total} finished · {left}"))
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


@register_screen("workers", "4", "Workers", "The background workers, the queue, the GPUs and the workers' logs")
class WorkersScreen(Screen):
    BINDINGS = [Binding("w", "start_worker", "Worker")]
    HELP = [("w", "start a background worker (choose its device)")]
    reading = False

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

    def poll(self) -> None:
        if self.is_current and not self.reading:  # a read still under way: the next tick reads again
            self.reading = True
            self.load()

    @work(thread=True, group="workers")
    def load(self) -> None:
        try:
            self.post_message(SnapshotRead(snapshot(self.app.store)))
        except Exception as exc:  # noqa: BLE001 - a damaged store must not crash the app
            self.post_message(SnapshotRead(None, exc))

    def on_snapshot_read(self, message: SnapshotRead) -> None:
        self.reading = False
        if message.snap is None:
            self.query_one("#workers-view", Static).update(Text(f"cannot read the workers: {message.error}",
                                                                style="red"))
            return
        self.snapshot = message.snap
        self.query_one("#workers-view", Static).update(render(message.snap))

    def action_start_worker(self) -> None:
        self.app.ask_training_worker()
