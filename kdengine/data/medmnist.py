"""``--data medmnist:NAME[@SIZE]``: MedMNIST+ (Yang et al., Scientific Data 2023) by name, from its official files.

The 12 2D datasets at 28, 64, 128 or 224 px (``chestmnist@64`` reads ``chestmnist_64.npz``, ``@28`` reads
``chestmnist.npz``; without a size, the file at the run's image size where there is one, else the 28 px one), from ``$MEDMNIST_ROOT``, by default the medmnist package's ``~/.medmnist``. The task (multi-class,
binary, multi-label), the label names, the colour and the official train/val/test splits come from the dataset's
own metadata (``medmnist.json``, from the medmnist package's ``info.py``); kdstudy needs neither the package nor the
network to read them. A file that is missing is one line saying how to get it. The 3D datasets (OrganMNIST3D and
the others: volumes, not images) are out of scope.

RetinaMNIST's task is ordinal regression: kdstudy trains it as 5-class classification, and says so.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from .arrays import NpzSource

ROOT_ENV = "MEDMNIST_ROOT"
TASKS = {"multi-class": "multiclass", "binary-class": "binary", "multi-label, binary-class": "multilabel",
         "ordinal-regression": "multiclass"}


@lru_cache(maxsize=1)
def catalogue() -> dict:
    return json.loads((Path(__file__).parent / "medmnist.json").read_text())


def root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or Path.home() / ".medmnist").expanduser()


def parse(arg: str, image_size: int | None = None) -> tuple[str, int]:
    """``chestmnist@64`` -> ("chestmnist", 64); without a size, the file at the run's image size where MedMNIST+
    has one (64 px reads chestmnist_64.npz), else the 28 px one. One line for an unknown name or size, and for the
    3D sets."""
    name, _, size_text = arg.strip().lower().partition("@")
    known = catalogue()["datasets"]
    if name.endswith("3d"):
        raise DataError(f"medmnist: {name} is a 3D dataset (volumes): out of kdstudy's scope, which trains on 2D images "
                        "(the 2D sets: " + ", ".join(known) + ")")
    if name not in known:
        raise DataError(f"medmnist: unknown dataset '{name}' (the 2D sets: {', '.join(known)})")
    sizes = catalogue()["sizes"]
    try:
        size = int(size_text) if size_text else (image_size if image_size in sizes else 28)
    except ValueError:
        raise DataError(f"medmnist: size must be a number, got '{size_text}'") from None
    if size not in sizes:
        raise DataError(f"medmnist: {name} has sizes {', '.join(map(str, sizes))}, not {size}")
    return name, size


def file_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


class MedmnistSource(NpzSource):
    kind = "medmnist"

    def __init__(self, arg: str, val_fraction: float = 0.15, split_seed: int = 0, color: str = "auto",
                 uncertain: str = "none", cap_train: int | None = None, cap_test: int | None = None,
                 image_size: int | None = None) -> None:
        name, size = parse(arg, image_size)
        meta = catalogue()["datasets"][name]
        path = root() / file_name(name, size)
        if not path.is_file():
            raise DataError(
                f"medmnist: {path} not found; get it with the medmnist package: pip install medmnist && python -c "
                f"\"import medmnist; medmnist.{meta['class']}(split='train', download=True, size={size}, "
                f"root='{root()}')\" (or set ${ROOT_ENV} to the folder that holds {file_name(name, size)})")
        super().__init__(path, val_fraction=val_fraction, split_seed=split_seed, class_names=meta["labels"],
                         color=color, uncertain=uncertain, cap_train=cap_train, cap_test=cap_test)
        task = TASKS[meta["task"]]
        if (task == "multilabel") != self.multilabel:
            said = "multi-label" if task == "multilabel" else meta["task"]
            raise DataError(f"medmnist: {path.name}'s labels are {'multi-label' if self.multilabel else 'one class per image'}"
                            f" but {name} is {said}: the file does not hold {name}")
        if len(self.class_names) != len(meta["labels"]):
            raise DataError(f"medmnist: {path.name} has {len(self.class_names)} label columns; {name} has "
                            f"{len(meta['labels'])}")
        self.description = f"medmnist:{name}@{size} ({meta['class']}, {meta['task']}, {path})"
        self.name, self.size = name, size
        if meta["task"] == "ordinal-regression":
            self.notes.append(f"{name} is ordinal regression in MedMNIST; kdstudy trains it as "
                              f"{len(meta['labels'])}-class classification")
        self._fingerprint = f"medmnist|{name}|{size}|" + self._fingerprint
