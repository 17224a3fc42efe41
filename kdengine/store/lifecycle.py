"""A run's lifecycle: its states and the changes allowed between them (no torch).

Every state change in the store goes through ``RunStore.transition``, which refuses one not declared here
(:class:`IllegalTransition`); docs/run-store.md's table is tested against :data:`TRANSITIONS`.
"""
from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """The states a run's status.json holds (a ``str``: it compares equal to the JSON string)."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:  # as the string's: a dict keyed by states finds "queued" read from JSON
        return str.__hash__(self.value)


QUEUED, RUNNING, FINISHED, FAILED, STOPPED = State
STATES = tuple(s.value for s in State)
ENDED = (FINISHED, FAILED, STOPPED)  # a run in these states has no process
STATES_BY_PROGRESS = (FINISHED, RUNNING, QUEUED, FAILED, STOPPED)  # how a study's counts are listed

# (from, to) -> why it happens. A state may stay itself where a status changes without a new state.
TRANSITIONS: dict[tuple[State, State], str] = {
    (QUEUED, QUEUED): "asked for again: another device; or a note why it waits (its teacher, GPU memory)",
    (QUEUED, RUNNING): "a worker (or a dispatcher) claims it",
    (QUEUED, STOPPED): "stopped before it started",
    (QUEUED, FAILED): "its spec.json cannot be read (damaged)",
    (RUNNING, FINISHED): "it trained to its end",
    (RUNNING, FAILED): "a NaN loss, a crash, bad data; or its process is gone (read as interrupted)",
    (RUNNING, STOPPED): "stopped by the user, or interrupted (ctrl-c): resumable",
    (RUNNING, QUEUED): "out of GPU memory beside other runs: it waits for a less crowded slot",
    (RUNNING, RUNNING): "a dispatcher hands an interrupted run to another node",
    (FAILED, QUEUED): "retried (it resumes from its last finished epoch)",
    (FAILED, RUNNING): "a dispatcher takes over an interrupted run",
    (STOPPED, QUEUED): "retried or asked for again (it resumes)",
    (FINISHED, FAILED): "retried with --force: its results were damaged",
}


class IllegalTransition(RuntimeError):
    """A state change the lifecycle does not allow: a bug in the caller, never a user's error."""


def check(current: str | None, to: str) -> State:
    """``to`` as a State when ``current -> to`` is allowed (``current`` None: a new run, which starts queued)."""
    target = State(to)
    if current is None:
        if target is not QUEUED:
            raise IllegalTransition(f"a new run starts queued, not {target}")
        return target
    if (State(current), target) not in TRANSITIONS:
        raise IllegalTransition(f"a run cannot go from {current} to {target}")
    return target
