"""The GPU fast path's two switches (``device_input``, ``cuda_graph``) and where a run's value for each comes from
(no torch here: packing plans with them, the trainer's device set-up applies them).

Best first: the flag given (``--device-input`` / ``--no-device-input``), else the environment
(``$KDSTUDY_DEVICE_INPUT`` / ``$KDSTUDY_CUDA_GRAPH``: 1 or 0; detached workers inherit it), else, for a CUDA run
only, the defaults file (:func:`defaults_path`: ``kdengine/fast_path.json``, or ``$KDSTUDY_FAST_PATH_FILE``), else
off. The file speaks for GPUs alone: a CPU run's numbers never change with a GPU's verdict.

The defaults file is written by ``make gpu-verify VERIFY_ARGS=--apply`` (``benchmarks/verify.py``) with each flag's
verdict and the evidence behind it (the card, the date, the speed-ups' lower bounds, the tests): a flag turns on by
default when its GPU tests pass and it is faster, by a margin, than the path without it, never by a hand edit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import write_json
from .errors import UsageError

DEVICE_INPUT_ENV, CUDA_GRAPH_ENV = "KDSTUDY_DEVICE_INPUT", "KDSTUDY_CUDA_GRAPH"
FLAGS = {"device_input": DEVICE_INPUT_ENV, "cuda_graph": CUDA_GRAPH_ENV}
FILE_ENV = "KDSTUDY_FAST_PATH_FILE"


def defaults_path() -> Path:
    env = os.environ.get(FILE_ENV)
    return Path(env).expanduser() if env else Path(__file__).with_name("fast_path.json")


def read_defaults(path: Path | None = None) -> dict[str, dict]:
    """The defaults file as written (each flag: ``default`` and the verdict behind it); {} when there is none."""
    path = Path(path) if path is not None else defaults_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable fast-path defaults file ({exc}); restore it (git checkout) or "
                         "write it again with make gpu-verify VERIFY_ARGS=--apply") from None
    tables = [raw.get(k, {}) for k in FLAGS] if isinstance(raw, dict) else [None]
    if any(not isinstance(t, dict) or not isinstance(t.get("default", False), bool) for t in tables):
        raise UsageError(f"{path}: each of {', '.join(FLAGS)} must be a table with a true/false 'default'")
    return raw


def defaults() -> dict[str, bool]:
    """Each switch's default from the defaults file (off where it says nothing)."""
    raw = read_defaults()
    return {k: bool(raw.get(k, {}).get("default", False)) for k in FLAGS}


def flag(value: bool | None, name: str, cuda: bool = True) -> bool:
    """A switch's value: as given, else from the environment, else (``cuda``: the run trains on a GPU) from the
    defaults file, else off."""
    if value is not None:
        return bool(value)
    env = os.environ.get(FLAGS[name], "")
    if env != "":
        return env != "0"
    return defaults()[name] if cuda else False


def resolve(fast: dict | None, cuda: bool = True) -> dict[str, bool]:
    """Both switches, each resolved by :func:`flag` (``fast``: what the flags gave, None where not given)."""
    fast = fast or {}
    return {name: flag(fast.get(name), name, cuda) for name in FLAGS}


def write_defaults(verdicts: dict[str, dict], path: Path | None = None) -> Path:
    """Write each flag's verdict (``{"default": bool, ...evidence}``) into the defaults file, atomically; flags
    not in ``verdicts`` keep what the file said."""
    for name, verdict in verdicts.items():
        if name not in FLAGS or not isinstance(verdict.get("default"), bool):
            raise ValueError(f"not a fast-path verdict: {name}: {verdict!r}")
    path = Path(path) if path is not None else defaults_path()
    current = read_defaults(path)
    current.update(verdicts)
    write_json(path, current)
    return path
