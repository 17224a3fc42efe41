"""A teacher's outputs, computed once and shared by every student that would compute the very same numbers.

A training view is a pure function of (seed, epoch, image) (``data/augment.py``), and the batches of an
epoch a pure function of (seed, epoch, batch size) (``data/loader.py``), so the students of one teacher run
and seed see identical batches, and the teacher's logits on them are identical too. The first student
writes them into the teacher's run directory, per epoch, atomically and once
(``teacher_outputs/<key>/train-e0001.npy``); later students read them instead of running the teacher
(FKD's idea, Shen & Xing 2022, without its approximation: the key holds everything the numbers depend on).

The key: the teacher run, the student's seed, the batch size, the data config (image size included),
the augmentation (its version, policy and implementation: albumentations or tensor ops), and the
numerics (device type, autocast dtype, memory format, CPU threads): a student never reads logits it
would not have computed itself, bit for bit. Two students training at once
may both compute; the first write wins and no reader sees a partial file. Evaluation-time teacher
probabilities (no augmentation, no seed) are shared the same way.

``KDSTUDY_NO_LOGIT_SHARING=1`` turns it off (benchmarks, checks).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_json
from ..data.augment import augment_key

DISABLE_ENV = "KDSTUDY_NO_LOGIT_SHARING"


def sharing_enabled() -> bool:
    return not os.environ.get(DISABLE_ENV)


class TeacherOutputs:
    """The shared outputs of one teacher run under one key."""

    def __init__(self, teacher_dir: Path, key: dict) -> None:
        blob = json.dumps(key, sort_keys=True, default=str)
        self.dir = Path(teacher_dir) / "teacher_outputs" / hashlib.sha256(blob.encode()).hexdigest()[:16]
        self.key = key

    @classmethod
    def for_training(cls, teacher_dir: Path, teacher_id: str, seed: int, batch_size: int, data: dict,
                     numerics: dict, augment: str) -> "TeacherOutputs":
        return cls(teacher_dir, {"teacher": teacher_id, "seed": seed, "batch_size": batch_size, "data": data,
                                 "augment": augment_key(augment), "numerics": numerics, "what": "train logits"})

    @classmethod
    def for_evaluation(cls, teacher_dir: Path, teacher_id: str, batch_size: int, data: dict,
                       numerics: dict) -> "TeacherOutputs":
        return cls(teacher_dir, {"teacher": teacher_id, "batch_size": batch_size, "data": data,
                                 "numerics": numerics, "what": "eval probabilities"})

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.npy"

    def load(self, name: str, rows: int) -> np.ndarray | None:
        """The array saved under ``name``, if it exists and has ``rows`` rows; None otherwise."""
        path = self._path(name)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return arr if arr.ndim == 2 and len(arr) == rows and arr.dtype == np.float32 else None

    def save(self, name: str, arr: np.ndarray) -> None:
        """Write once: the first writer wins; a reader sees the whole file or none."""
        path = self._path(name)
        if path.exists():
            return
        if not (self.dir / "key.json").exists():
            write_json(self.dir / "key.json", self.key)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
