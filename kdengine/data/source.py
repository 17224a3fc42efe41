"""The one source abstraction every dataset kind implements.

A source yields, per split (train, val, test), an index of
(image reference, label, group id), plus the class names and a summary.
The group id is the patient wherever the source knows patients, so that
splits can be grouped and never leak a patient.

Nothing here imports torch: the TUI uses the data layer to check paths.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError
from ..metric_names import SPLITS


@dataclass
class SplitIndex:
    """Parallel lists: ``refs[i]`` (a path or an int into an array), its label and group.

    A label is a class number, or for a multi-label source a tuple of 0/1 per finding (-1: not known, left out of
    the loss and the metrics: the uncertainty policy's "ignore")."""

    refs: list[Any] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.refs)

    def add(self, ref: Any, label: Any, group: str) -> None:
        self.refs.append(ref)
        self.labels.append(tuple(int(v) for v in label) if isinstance(label, (tuple, list, np.ndarray))
                           else int(label))
        self.groups.append(str(group))

    def subset(self, positions: Sequence[int]) -> "SplitIndex":
        return SplitIndex(
            [self.refs[i] for i in positions],
            [self.labels[i] for i in positions],
            [self.groups[i] for i in positions],
        )


@dataclass
class Skipped:
    path: str
    reason: str


class Source:
    """Base class. Subclasses fill ``splits``, ``class_names`` and implement ``load``.

    ``multilabel``: each image has a 0/1 label per finding (``class_names`` name the findings), else one class.
    ``channels``: 3 where the images are in colour (dermoscopy, pathology: ``load`` gives H x W x 3 RGB), 1 for
    grey (``load`` gives H x W), decided per source: a grey study never pays for colour."""

    kind: str = "?"
    synthetic: bool = False
    multilabel: bool = False
    channels: int = 1

    def __init__(self) -> None:
        self.splits: dict[str, SplitIndex] = {s: SplitIndex() for s in SPLITS}
        self.class_names: list[str] = []
        self.skipped: list[Skipped] = []
        self.notes: list[str] = []
        self.description = ""
        self.dicom_stats = None  # DicomStats when the source holds DICOM files

    # -- to implement -----------------------------------------------------
    def load(self, ref: Any) -> np.ndarray:
        """Decode one image to a uint8 array (any size): H x W grey, or H x W x 3 RGB for a colour source."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A string that changes whenever the source's content changes."""
        raise NotImplementedError

    def load_seen(self, ref: Any) -> tuple[np.ndarray, bool]:
        """``load``, and whether the file had colour (``data check`` counts them: a grey source reads them grey).
        A source of files overrides it to look at the file itself."""
        img = self.load(ref)
        return img, img.ndim == 3 and img.shape[2] >= 3

    def ref_name(self, ref: Any) -> str:
        """A human-readable name for an image reference (used in errors)."""
        return str(ref)

    # -- shared -----------------------------------------------------------
    def all_refs(self) -> list[Any]:
        return [r for s in SPLITS for r in self.splits[s].refs]

    @property
    def task_kind(self) -> str:
        """multilabel, binary (two classes) or multiclass: what the loss, the metrics and the methods follow."""
        return "multilabel" if self.multilabel else "binary" if len(self.class_names) == 2 else "multiclass"

    def kind_text(self) -> str:
        """'grey multi-class, 7 classes', 'colour multi-label, 14 findings': what `data check` says the data is."""
        colour = "colour" if self.channels == 3 else "grey"
        n = len(self.class_names)
        what = {"multilabel": f"multi-label, {n} findings", "binary": "binary, 2 classes"}.get(
            self.task_kind, f"multi-class, {n} classes")
        return f"{colour} {what}"

    def positives(self, split: str) -> list[int]:
        """Images per class (a multi-label source: positives per finding) in one split."""
        labels = self.splits[split].labels
        if self.multilabel:
            arr = np.asarray(labels, np.int64).reshape(len(labels), len(self.class_names))
            return [int(v) for v in (arr == 1).sum(0)]
        counts = Counter(labels)
        return [counts.get(c, 0) for c in range(len(self.class_names))]

    def validate(self) -> None:
        """Raise DataError when the indexed data cannot be trained on."""
        total = sum(len(self.splits[s]) for s in SPLITS)
        if total == 0:
            raise DataError(f"{self.description}: the dataset is empty (no images found)")
        if len(self.class_names) < 2 and not self.multilabel:
            raise DataError(f"{self.description}: needs at least 2 classes, found {len(self.class_names)}")
        if self.multilabel:  # every finding needs positives to learn from; val and test may lack a rare one
            missing = [n for n, c in zip(self.class_names, self.positives("train")) if not c]
            if missing:
                raise DataError(f"{self.description}: finding {', '.join(missing)} has no positive image in the "
                                "train split")
            return
        for split in SPLITS:
            present = set(self.splits[split].labels)
            missing = [self.class_names[c] for c in range(len(self.class_names)) if c not in present]
            if missing:
                raise DataError(
                    f"{self.description}: class {', '.join(missing)} has no image in the {split} split"
                )

    def summary(self) -> dict[str, Any]:
        """Everything `kdengine data check` prints, as plain JSON-able data."""
        per_split = {}
        for split in SPLITS:
            idx = self.splits[split]
            per_split[split] = {
                "images": len(idx),
                "groups": len(set(idx.groups)),
                "per_class": dict(zip(self.class_names, self.positives(split))),
            }
        groups = [set(self.splits[s].groups) for s in SPLITS]
        shared = (groups[0] & groups[1]) | (groups[0] & groups[2]) | (groups[1] & groups[2])
        return {
            "source": self.kind,
            "description": self.description,
            "synthetic": self.synthetic,
            "kind": self.kind_text(),
            "task": self.task_kind,
            "channels": self.channels,
            "classes": list(self.class_names),
            "splits": per_split,
            "groups_shared_between_splits": len(shared),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "notes": list(self.notes),
            **({"dicom": self.dicom_stats.summary()} if self.dicom_stats is not None else {}),
        }


# -- the kinds of source, each registered where it is defined (kdengine/data/sources/) ---------------------------
@dataclass(frozen=True)
class SourceKind:
    """A kind of data source as ``--data`` names it: ``NAME:ARG`` (a path, or options), opened by ``opener``."""

    name: str
    syntax: str  # how it is written, for the help: "mura:PATH"
    opener: Callable[[str, Any], "Source"]  # (its argument, the DataConfig) -> the indexed source; loads its readers
    paths: bool = True  # its argument is a file or folder (made absolute; it must exist)
    suffixes: tuple[str, ...] = ()  # a bare file with one of these endings is of this kind
    file_word: str = ""  # such a file, in a word: "an .npz", "a .csv manifest"
    infer: Callable[[Path], bool] | None = None  # a bare folder laid out as this kind
    folders: bool = False  # a bare folder no other kind claims is of this kind
    tasks: bool = False  # it honours --task (the other kinds have one task)
    rank: int = 100  # its place in the help and in inference


SOURCE_KINDS: dict[str, SourceKind] = {}


def register_source(name: str, syntax: str | None = None, **declared: Any) -> Callable:
    """Register the decorated opener ``(argument, DataConfig) -> Source`` as the source kind ``name`` (``syntax``:
    how it is written; the rest: :class:`SourceKind`'s fields). A module in ``kdengine/data/sources/`` that does
    this is a new ``--data`` kind: the CLI's help, the launch form's data check and every run read it from here."""
    def register(opener: Callable) -> Callable:
        if name in SOURCE_KINDS:
            raise ValueError(f"source kind {name!r} is registered twice")
        SOURCE_KINDS[name] = SourceKind(name, syntax or f"{name}:PATH", opener, **declared)
        return opener

    return register


def source_kinds() -> list[SourceKind]:
    """Every registered kind, in the order the help names them."""
    from . import sources  # noqa: F401 - importing the package registers every kind it holds (light: no readers)

    return sorted(SOURCE_KINDS.values(), key=lambda k: (k.rank, k.name))
