"""A run's status as the store reads it: :class:`RunStatus`, typed (no torch).

``status.json`` is the run's own record; :meth:`RunStore.read_status` corrects it with the best evidence the store
holds (metrics and a best checkpoint mean finished; a dead process means interrupted) and returns it as a
``RunStatus``, so a reader asks ``status.state`` (a :class:`State`) and never spells a key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .lifecycle import State


@dataclass(frozen=True)
class RunStatus:
    state: State
    reason: str | None = None  # why it failed, stopped or waits
    device: str = "auto"  # the device asked for: auto, cpu or cuda
    progress: Mapping[str, Any] = field(default_factory=dict)  # epoch, step, phase, ETA: what a worker reports
    trained_on: Mapping[str, Any] = field(default_factory=dict)  # the device, GPU, host and input path it ran on
    stale: bool = False  # recorded running, but its process is gone: interrupted (it resumes when asked)
    note: str | None = None  # how the store corrected status.json (finished by its evidence)
    recovered: str | None = None  # status.json was unreadable: where the status came from instead
    requeued_from: str | None = None  # the state it was queued again from (a retry, an OOM requeue)
    worker: str | None = None  # the worker that claimed it
    recorded: Mapping[str, Any] = field(default_factory=dict)  # everything as read (pid, host, heartbeat, …)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunStatus":
        return cls(state=State(d["state"]), reason=d.get("reason"), device=d.get("device") or "auto",
                   progress=d.get("progress") or {}, trained_on=d.get("trained_on") or {},
                   stale=bool(d.get("stale")), note=d.get("note"), recovered=d.get("recovered"),
                   requeued_from=d.get("requeued_from"), worker=d.get("worker"), recorded=dict(d))

    @property
    def finishing(self) -> bool:
        """Running its final evaluation (the best checkpoint on every split): a stop asked now cannot stop it, it
        finishes (the trainer marks the phase ``final`` and no longer heeds a stop)."""
        return self.state == State.RUNNING and bool(self.progress.get("final"))

    @property
    def place(self) -> str:
        """Where it trained (cuda:0 …), or, before it started, what it asked for (auto, cpu, cuda)."""
        return str(self.trained_on.get("device") or self.device)

    def as_dict(self) -> dict[str, Any]:
        """The status as JSON holds it (``runs show --json``, ``study status``)."""
        return {**self.recorded, "state": self.state.value, "reason": self.reason}
