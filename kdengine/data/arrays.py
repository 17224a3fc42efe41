"""Sources whose images already sit in arrays: MedMNIST-style ``.npz`` and the synthetic set."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError
from ..paths import data_dir
from . import synthetic
from .memo import ArrayMemo
from .source import SPLITS, Source, SplitIndex
from .splits import grouped_split


def _to_gray(images: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W) or (N,H,W,C) of a numeric dtype to (N,H,W) uint8; NaN, infinities and empty images refused."""
    if images.dtype.kind not in "uifb":
        raise DataError(f"{where}: images must be numbers, got dtype {images.dtype}")
    if images.ndim == 4:
        if images.shape[-1] == 1:
            images = images[..., 0]
        elif images.shape[-1] in (3, 4):
            rgb = images[..., :3].astype(np.float32)
            images = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        else:
            raise DataError(f"{where}: images have {images.shape[-1]} channels; expected 1, 3 or 4")
    if images.ndim != 3:
        raise DataError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise DataError(f"{where}: images are empty (shape {images.shape})")
    if images.shape[1] * images.shape[2] > 64_000_000:
        raise DataError(f"{where}: images of {images.shape[1]} x {images.shape[2]} pixels are over the 64 Mpx limit")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise DataError(f"{where}: images hold NaN or infinite values")
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
        hi = float(images.max()) if images.size else 1.0
        if hi <= 1.0:
            images = images * 255.0
        images = np.clip(images + 0.5, 0, 255).astype(np.uint8)
    return images


class ArraySource(Source):
    """Images held in memory; a ref is an int into ``self.images``."""

    def __init__(self) -> None:
        super().__init__()
        self.images = np.zeros((0, 1, 1), np.uint8)
        self._fingerprint = ""

    def load(self, ref: Any) -> np.ndarray:
        return self.images[int(ref)]

    def fingerprint(self) -> str:
        return self._fingerprint

    def ref_name(self, ref: Any) -> str:
        return f"{self.description}[{ref}]"


class NpzSource(ArraySource):
    """A MedMNIST-style file: ``train_images``, ``train_labels``, ``val_*``, ``test_*``.

    Labels may be (N,) or (N, 1). Multi-label MedMNIST sets (ChestMNIST) are refused.
    A missing ``val_*`` pair is carved out of train (stratified; no groups known).
    """

    kind = "npz"

    def __init__(self, path: Path, val_fraction: float = 0.15, split_seed: int = 0,
                 class_names: list[str] | None = None) -> None:
        super().__init__()
        self.description = f"npz:{path}"
        if not path.is_file():
            raise DataError(f"npz: no such file: {path}")
        if not zipfile.is_zipfile(path):  # numpy would suggest allow_pickle: never load pickles
            raise DataError(f"npz: {path} is not an .npz archive (a zip of named arrays, as numpy.savez writes)")
        try:
            arrays = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"npz: cannot read {path}: {str(exc).split('. If you trust')[0]}") from None
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise DataError(f"npz: {path} holds one array, not an .npz archive of named arrays")
        keys = set(arrays.files)
        for need in ("train_images", "train_labels", "test_images", "test_labels"):
            if need not in keys:
                raise DataError(f"npz: {path} has no array '{need}' (found: {', '.join(sorted(keys)) or 'none'})")
        chunks, offset = [], 0
        labels_all: dict[str, np.ndarray] = {}
        for split in SPLITS:
            if f"{split}_images" not in keys:
                continue
            imgs = _to_gray(_array(arrays, f"{split}_images", path), f"npz:{path} {split}_images")
            labels = _array(arrays, f"{split}_labels", path)
            if labels.ndim == 2 and labels.shape[1] > 1:
                raise DataError(f"npz: {split}_labels is multi-label {labels.shape}; only single-label tasks are supported")
            labels = _labels(labels.reshape(-1), f"npz:{path} {split}_labels")
            if len(labels) != len(imgs):
                raise DataError(f"npz: {split}_images has {len(imgs)} images but {split}_labels has {len(labels)} labels")
            labels_all[split] = labels
            for i, y in enumerate(labels):
                self.splits[split].add(offset + i, int(y), f"{split}-{i}")
            chunks.append(imgs)
            offset += len(imgs)
        if len({c.shape[1:] for c in chunks}) != 1:
            raise DataError(f"npz: {path}: the splits hold images of different sizes")
        self.images = np.concatenate(chunks)
        n_classes = int(max(int(v.max()) for v in labels_all.values() if len(v)) + 1) if offset else 0
        self.class_names = class_names or [str(c) for c in range(n_classes)]
        if "val_images" not in keys:
            self.splits["train"], self.splits["val"] = grouped_split(self.splits["train"], val_fraction, split_seed)
            self.notes.append(f"no val arrays: {val_fraction:.0%} of train carved out as val (stratified)")
        st = path.stat()
        self._fingerprint = f"npz|{path}|{st.st_size}|{st.st_mtime_ns}"


def _array(arrays, key: str, path: Path) -> np.ndarray:
    """One array of an .npz; object arrays (pickles) are refused, never loaded."""
    try:
        return arrays[key]
    except ValueError as exc:
        raise DataError(f"npz: {path}: '{key}' is an object array ({exc}); kdstudy loads no pickles") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"npz: {path}: '{key}' cannot be read ({exc})") from None


def _labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Class indices 0..K-1 as int64: strings, fractions, NaN and negative numbers are refused."""
    if labels.dtype.kind not in "uib":
        if labels.dtype.kind != "f" or not np.isfinite(labels).all() or not (labels == np.round(labels)).all():
            raise DataError(f"{where}: labels must be whole class numbers 0..K-1, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: labels must be class numbers 0..K-1, found {int(labels.min())}")
    if labels.size and labels.max() > 10_000:
        raise DataError(f"{where}: label {int(labels.max())} is not a plausible class number (at most 10000 classes)")
    return labels


class SyntheticSource(ArraySource):
    """The embedded default: generated on first use into ``data/synthetic/`` and reused."""

    kind = "synthetic"
    synthetic = True

    def __init__(self, cfg: synthetic.SyntheticConfig, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, split_seed: int = 0, site: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        where = f", site={site}: another machine's acquisition" if site else ""
        self.description = (f"synthetic (images={cfg.images}, difficulty={cfg.difficulty}, seed={cfg.seed}{where}; "
                            "generated, not real radiographs)")
        self.images, labels, patients = _generated(cfg, site)
        self.class_names = list(synthetic.CLASSES)
        pool = SplitIndex()
        for i, (y, p) in enumerate(zip(labels, patients)):
            pool.add(i, int(y), f"patient{int(p):05d}")
        rest, self.splits["test"] = grouped_split(pool, test_fraction, split_seed + 1)
        self.splits["train"], self.splits["val"] = grouped_split(rest, val_fraction / max(1e-9, 1 - test_fraction), split_seed)
        self._fingerprint = f"synthetic|{json.dumps(cfg.__dict__, sort_keys=True)}|v1" + (f"|site{site}" if site else "")
        self.notes.append("SYNTHETIC data: procedurally generated, not real radiographs")


GENERATED = ArrayMemo("synthetic sets")


def _generated(cfg: synthetic.SyntheticConfig, site: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images as the site renders them, labels, patients): a pure function of (cfg, site), so made (or read
    from disk) once per process: a study opens its data for every run, and the external site for every run's
    shift evaluation (rendering a site costs more than reading the set)."""
    key = (json.dumps(cfg.__dict__, sort_keys=True), site)
    kept = GENERATED.get(key)
    if kept is not None:
        return kept
    arrays = load_or_generate(cfg)
    images = arrays["images"]
    if site:
        from .corruptions import render_site  # cv2: only another synthetic site needs it

        images = render_site(images, site)
    out = (images, arrays["labels"], arrays["patients"])
    GENERATED.put(key, *out)
    return out


def load_or_generate(cfg: synthetic.SyntheticConfig) -> dict[str, np.ndarray]:
    key = hashlib.sha256(json.dumps(cfg.__dict__, sort_keys=True).encode()).hexdigest()[:12]
    path = data_dir() / "synthetic" / f"synthetic-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("images", "labels", "patients")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged file: generate again
    arrays = synthetic.generate(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return arrays
