"""The tails of the detached workers' logs (``.workers/worker-*.log``, written by ``execution.spawn``), newest
first, for a monitor that shows what the workers say (no torch)."""
from __future__ import annotations

from .runstore import RunStore

TAIL_BYTES = 8192


def worker_log_tails(store: RunStore, count: int = 3, lines: int = 6) -> list[tuple[str, list[str]]]:
    """(file name, its last ``lines`` lines) of the ``count`` newest worker logs."""
    folder = store.workers_dir()
    if not folder.is_dir():
        return []
    dated = []
    for path in folder.glob("worker-*.log"):
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError:  # gone between the listing and the look
            continue
    out = []
    for _, path in sorted(dated, reverse=True)[:count]:
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
                tail = fh.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            tail = []
        out.append((path.name, tail))
    return out
