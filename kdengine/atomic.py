"""Atomic file writes: write a temp file beside the target, fsync, then rename. A reader sees the old file or
the new one, never half of one; a write that fails (a full disk) leaves the old file as it was.

Temp files are named ``.<name>.<random>.tmp``. One left by a process killed mid-write is harmless (nothing
reads it) and is removed when its run resumes, or by ``kdengine runs doctor --fix``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import KDError

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # results are for the group to read too (mkstemp alone makes 0600 files)
TEMP_GLOB = ".*.tmp"
# Fault injection for tests: "SECONDS" or "SECONDS:NAME,NAME" pauses inside every atomic write (of files whose
# name holds one of the NAMEs), after the data and before the rename, so that a test can kill the process
# mid-write. Never set in normal use.
_PAUSE_ENV = "KDSTUDY_FAULT_PAUSE_WRITES"


class DiskFull(KDError):
    """A write failed for want of space (ENOSPC, EDQUOT): the environment, not a bug (exit 2)."""


class NotWritable(KDError):
    """A write failed for want of permission, or on a read-only filesystem (exit 2)."""


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a full disk or an unwritable place into one clear error naming the path."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"disk full writing {path}: free some space, then resume (the last good files "
                           "are intact)") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise NotWritable(f"cannot write {path}: {exc.strerror.lower()}") from None
        raise


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path in the same folder; on success it replaces ``path`` atomically."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            try:
                yield Path(tmp)
            except (OSError, KDError):
                raise
            except Exception:  # a writer (safetensors, torch.save) that hides ENOSPC in its own error type
                if _disk_nearly_full(path.parent, tmp):
                    raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
                raise
            os.chmod(tmp, FILE_MODE)  # after the writer: some (safetensors) replace the file they are given
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if os.environ.get(_PAUSE_ENV):
                _fault_pause(path.name, os.environ[_PAUSE_ENV])
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _disk_nearly_full(folder: Path, tmp: str) -> bool:
    try:
        written = os.path.getsize(tmp)
        return shutil.disk_usage(folder).free < max(1 << 20, 2 * written)
    except OSError:
        return False


def _fault_pause(name: str, spec: str) -> None:
    seconds, _, names = spec.partition(":")
    if not names or any(n and n in name for n in names.split(",")):
        time.sleep(float(seconds))


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def temp_files(folder: Path) -> list[Path]:
    """Temp files of atomic writes under ``folder`` (any depth)."""
    try:
        return [p for p in Path(folder).rglob(TEMP_GLOB) if p.is_file()]
    except OSError:
        return []


def remove_temp_files(folder: Path) -> list[Path]:
    removed = []
    for p in temp_files(folder):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default``: arrays and tensors as lists, their scalars as numbers, paths as text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def lenient_json_default(obj: Any) -> Any:
    """As :func:`json_default`, and anything else as its text: an event line is never lost to a value's type."""
    try:
        return json_default(obj)
    except TypeError:
        return str(obj)
