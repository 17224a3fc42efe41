"""Results a process computes again and again, kept once: a least-recently-used map of numpy arrays in a byte budget.

Within one process a study trains its runs one after another, then evaluates each under shift: the same pure
functions of the same inputs come back run after run (an epoch's training views, the generated synthetic set,
the same test images under the same shift). Each memo holds such results, read-only, up to its budget
(``$KDSTUDY_MEMO_MB`` each, 256 by default; 0 turns every memo off), evicting the least recently used first; a
result larger than the budget is simply not kept. Only pure functions go in: what comes out of a memo is what
computing it again would give, bit for bit (each user's tests check it).
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

import numpy as np

BUDGET_ENV = "KDSTUDY_MEMO_MB"
DEFAULT_BUDGET_MB = 256


def budget_bytes() -> int:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_BUDGET_MB
    except ValueError:
        mb = DEFAULT_BUDGET_MB
    return max(0, int(mb * 2 ** 20))


def file_identity(path) -> tuple:
    """A file's path with its inode, mtime and size: a file written again in place is another key."""
    st = os.stat(path)
    return str(path), st.st_ino, st.st_mtime_ns, st.st_size


def rows_digest(rows: np.ndarray) -> str:
    """A short digest of row numbers (which images of a cache a result was computed on)."""
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


class ArrayMemo:
    """key -> a tuple of read-only numpy arrays, within the budget."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: OrderedDict[tuple, tuple[np.ndarray, ...]] = OrderedDict()
        self._lock = threading.Lock()  # a process's threads (an API caller's, a test's) may share one memo
        MEMOS.append(self)

    def get(self, key) -> tuple[np.ndarray, ...] | None:
        if not budget_bytes():
            return None
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    @staticmethod
    def fits(nbytes: int) -> bool:
        return 0 < nbytes <= budget_bytes()

    def put(self, key, *arrays: np.ndarray) -> bool:
        """Keep ``arrays`` under ``key``, evicting the least recently used; False when they exceed the budget."""
        nbytes, budget = sum(a.nbytes for a in arrays), budget_bytes()
        if not 0 < nbytes <= budget:
            return False
        for a in arrays:
            a.setflags(write=False)  # handed to every later caller: nobody may change them
        with self._lock:
            self._items.pop(key, None)
            while self._items and self._held() + nbytes > budget:
                self._items.popitem(last=False)
            self._items[key] = tuple(arrays)
        return True

    def _held(self) -> int:
        return sum(a.nbytes for item in self._items.values() for a in item)

    def held_bytes(self) -> int:
        with self._lock:
            return self._held()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MEMOS: list[ArrayMemo] = []


def clear_all() -> None:
    for memo in MEMOS:
        memo.clear()
