"""Where kdstudy keeps things: the run store and the data folder (no torch here)."""
from __future__ import annotations

import os
from pathlib import Path


def runs_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The run store: ``--runs-dir``, else ``$KDSTUDY_HOME``, else ``./runs``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("KDSTUDY_HOME")
    return Path(env).expanduser().resolve() if env else Path("runs").resolve()


def data_dir() -> Path:
    """Generated data and decoded caches: ``$KDSTUDY_DATA``, else ``$KDSTUDY_HOME/data``, else ``./data``."""
    env = os.environ.get("KDSTUDY_DATA")
    if env:
        return Path(env).expanduser().resolve()
    home = os.environ.get("KDSTUDY_HOME")
    return (Path(home).expanduser() / "data").resolve() if home else Path("data").resolve()


def cache_dir() -> Path:
    env = os.environ.get("KDSTUDY_CACHE")
    return Path(env).expanduser().resolve() if env else data_dir() / "cache"
