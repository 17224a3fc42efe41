"""Is the process that claimed a run still the one running it? (no torch)

A pid alone can lie: after a crash the number is recycled, often by another Python process. A claim
therefore records the pid *and* its start time (``/proc/<pid>/stat``, field 22); a run is alive when
that very process still exists and its heartbeat is fresh.
"""
from __future__ import annotations

import errno
import os


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[-1].split()
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when ``start`` is given, is the process that started then.

    Without a recorded start time (a status written by kdstudy 0.1), a recycled pid of a program that is
    not Python is still told apart."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    except (OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    except OSError:
        return True  # no /proc (macOS): the pid exists, and that is all we can know
    if start is not None:
        return process_start(pid) == start
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
        return b"python" in cmd or b"kdengine" in cmd
    except OSError:
        return True
