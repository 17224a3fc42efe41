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
from .splits import cap_per_class, grouped_split


def _to_uint8(images: np.ndarray, where: str, color: str = "grey") -> tuple[np.ndarray, int]:
    """(N,H,W) or (N,H,W,C) of a numeric dtype to uint8, and its channels: RGB kept as (N,H,W,3) unless ``color`` is
    grey (then made grey, as kdstudy always did), grey as (N,H,W); NaN, infinities and empty images refused."""
    if images.dtype.kind not in "uifb":
        raise DataError(f"{where}: images must be numbers, got dtype {images.dtype}")
    channels = 1
    if images.ndim == 4:
        if images.shape[-1] == 1:
            images = images[..., 0]
        elif images.shape[-1] in (3, 4):
            if color == "grey":
                rgb = images[..., :3].astype(np.float32)
                images = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
            else:
                images, channels = images[..., :3], 3
        else:
            raise DataError(f"{where}: images have {images.shape[-1]} channels; expected 1, 3 or 4")
    if images.ndim != 3 + (channels == 3):
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
    return images, (3 if color == "rgb" else channels)


def policy_labels(labels: np.ndarray, policy: str, where: str) -> np.ndarray:
    """A multi-label array (N, K) as 0/1 per finding, -1 where not known: uncertain (-1) and blank (NaN) labels
    follow ``policy`` (ignore: -1, left out of the loss and the metrics; zeros; ones: U-Ignore, U-Zeros, U-Ones of
    Irvin et al. 2019); without one (``none``) they are refused. Any other value is out of range."""
    if labels.dtype.kind not in "uifb":
        raise DataError(f"{where}: multi-label values must be numbers, got dtype {labels.dtype}")
    values = labels.astype(np.float64)
    blank = np.isnan(values)
    unsure = blank | (values == -1)
    ok = unsure | (values == 0) | (values == 1)
    if not ok.all():
        bad = values[~ok][0]
        raise DataError(f"{where}: multi-label values must be 0 or 1 (-1 uncertain, blank missing), found {bad:g}")
    if unsure.any():
        if policy == "none":
            kind = "blank (NaN)" if blank.any() else "uncertain (-1)"
            raise DataError(f"{where}: {int(unsure.sum())} labels are {kind}: choose what they mean with "
                            "--uncertain ignore|zeros|ones (data.uncertain)")
        fill = {"ignore": -1, "zeros": 0, "ones": 1}[policy]
        values = np.where(unsure, fill, values)
    return values.astype(np.int8)


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

    Images (N, H, W) grey or (N, H, W, 3) colour (kept in colour unless ``color`` is grey). Labels (N,) or (N, 1):
    one class per image; (N, K): K findings per image, 0/1 (a multi-label task such as ChestMNIST), with
    uncertain (-1) or blank (NaN) labels following ``uncertain``. A missing ``val_*`` pair is carved out of train
    (stratified; no groups known).
    """

    kind = "npz"

    def __init__(self, path: Path, val_fraction: float = 0.15, split_seed: int = 0,
                 class_names: list[str] | None = None, color: str = "auto", uncertain: str = "none",
                 cap_train: int | None = None, cap_test: int | None = None) -> None:
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
        widths = {_width(_array(arrays, f"{s}_labels", path)) for s in SPLITS if f"{s}_labels" in keys}
        if len(widths) > 1:
            raise DataError(f"npz: {path}: the splits' labels have different numbers of columns ({sorted(widths)})")
        self.multilabel = widths.pop() > 1
        channels = set()
        for split in SPLITS:
            if f"{split}_images" not in keys:
                continue
            imgs, ch = _to_uint8(_array(arrays, f"{split}_images", path), f"npz:{path} {split}_images", color)
            channels.add(ch)
            labels = _array(arrays, f"{split}_labels", path)
            where = f"npz:{path} {split}_labels"
            if self.multilabel:
                labels = policy_labels(labels.reshape(len(labels), -1), uncertain, where)
            else:
                labels = _labels(labels.reshape(-1), where)
            if len(labels) != len(imgs):
                raise DataError(f"npz: {split}_images has {len(imgs)} images but {split}_labels has {len(labels)} labels")
            labels_all[split] = labels
            for i, y in enumerate(labels):
                self.splits[split].add(offset + i, y if self.multilabel else int(y), f"{split}-{i}")
            chunks.append(imgs)
            offset += len(imgs)
        if len({c.shape[1:] for c in chunks}) != 1:
            raise DataError(f"npz: {path}: the splits hold images of different sizes")
        self.images = np.concatenate(chunks)
        self.channels = channels.pop() if len(channels) == 1 else 3
        if self.multilabel:
            n_classes = next(iter(labels_all.values())).shape[1]
        else:
            n_classes = int(max(int(v.max()) for v in labels_all.values() if len(v)) + 1) if offset else 0
        if class_names is not None and n_classes > len(class_names):
            raise DataError(f"npz: {path}: label {n_classes - 1} is out of range for {len(class_names)} classes")
        self.class_names = list(class_names) if class_names else [str(c) for c in range(n_classes)]
        if "val_images" not in keys:
            self.splits["train"], self.splits["val"] = grouped_split(self.splits["train"], val_fraction, split_seed)
            self.notes.append(f"no val arrays: {val_fraction:.0%} of train carved out as val (stratified)")
        self._cap(cap_train, cap_test, split_seed)
        st = path.stat()
        self._fingerprint = f"npz|{path}|{st.st_size}|{st.st_mtime_ns}"

    def _cap(self, cap_train: int | None, cap_test: int | None, seed: int) -> None:
        """``data.cap_train``: at most N train images per class, and val in the file's proportion (a study that fits a
        CPU, on a large set such as ChestMNIST); ``cap_test``: at most N test images per class. A seeded choice."""
        k = len(self.class_names)
        if cap_train:
            n_train, n_val = len(self.splits["train"]), len(self.splits["val"])
            val_cap = max(1, round(cap_train * n_val / max(1, n_train)))
            self.splits["train"] = cap_per_class(self.splits["train"], cap_train, seed, k)
            self.splits["val"] = cap_per_class(self.splits["val"], val_cap, seed + 1, k)
        if cap_test:
            self.splits["test"] = cap_per_class(self.splits["test"], cap_test, seed + 2, k)
        if cap_train or cap_test:
            self.notes.append(f"capped: {len(self.splits['train'])} train, {len(self.splits['val'])} val, "
                              f"{len(self.splits['test'])} test images (data.cap_train, data.cap_test)")


def _array(arrays, key: str, path: Path) -> np.ndarray:
    """One array of an .npz; object arrays (pickles) are refused, never loaded."""
    try:
        return arrays[key]
    except ValueError as exc:
        raise DataError(f"npz: {path}: '{key}' is an object array ({exc}); kdstudy loads no pickles") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"npz: {path}: '{key}' cannot be read ({exc})") from None


def _width(labels: np.ndarray) -> int:
    """Label columns: 1 for class numbers ((N,) or (N, 1)), K for K findings."""
    return 1 if labels.ndim < 2 else int(np.prod(labels.shape[1:]))


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
    """The embedded default: generated on first use into ``data/synthetic/`` and reused.

    Variants of the same images, for the tasks beyond grey radiographs, with no download: ``color`` stains each
    image with its class's colour (a colour source), ``labels="multi"`` gives every image five findings (orthopaedic
    hardware, a side marker, the region it shows) instead of a body part, a share ``uncertain`` of them uncertain
    (-1, for the uncertainty policy), ``labels="binary"`` asks whether it shows hardware. The splits are those of
    the grey set (grouped by patient, stratified by body part) whatever the variant."""

    kind = "synthetic"
    synthetic = True

    def __init__(self, cfg: synthetic.SyntheticConfig, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, split_seed: int = 0, site: int = 0, color: bool = False,
                 labels: str = "classes", uncertain: float = 0.0, policy: str = "none") -> None:
        super().__init__()
        self.cfg = cfg
        where = f", site={site}: another machine's acquisition" if site else ""
        variant = ("colour, " if color else "") + {"multi": "multi-label, ", "binary": "binary, "}.get(labels, "")
        self.description = (f"synthetic ({variant}images={cfg.images}, difficulty={cfg.difficulty}, seed={cfg.seed}"
                            f"{where}; generated, not real radiographs)")
        arrays = _generated(cfg, site)
        self.images, classes, patients = arrays["images"], arrays["labels"], arrays["patients"]
        if color:
            self.images, self.channels = synthetic.colourize(self.images, classes, patients, cfg.seed), 3
        if labels == "multi":
            self.multilabel = True
            self.class_names = list(synthetic.FINDINGS)
            marked = synthetic.uncertain(synthetic.findings(arrays), uncertain, cfg.seed)
            targets = policy_labels(marked, policy, f"synthetic:labels=multi,uncertain={uncertain:g}")
        elif labels == "binary":
            self.class_names = list(synthetic.BINARY)
            targets = arrays["hardware"].astype(np.int64)
        else:
            self.class_names = list(synthetic.CLASSES)
            targets = classes
        pool = SplitIndex()
        for i, (y, p) in enumerate(zip(classes, patients)):
            pool.add(i, int(y), f"patient{int(p):05d}")
        rest, test = grouped_split(pool, test_fraction, split_seed + 1)
        train, val = grouped_split(rest, val_fraction / max(1e-9, 1 - test_fraction), split_seed)
        for split, index in (("train", train), ("val", val), ("test", test)):
            for ref, group in zip(index.refs, index.groups):
                self.splits[split].add(ref, targets[ref] if self.multilabel else int(targets[ref]), group)
        tag = ("|rgb" if color else "") + (f"|{labels}" if labels != "classes" else "") + \
            (f"|u{uncertain:g}|{policy}" if labels == "multi" and uncertain else "")
        self._fingerprint = f"synthetic|{json.dumps(cfg.__dict__, sort_keys=True)}|v1" + (f"|site{site}" if site else "") \
            + tag
        self.notes.append("SYNTHETIC data: procedurally generated, not real radiographs")


GENERATED = ArrayMemo("synthetic sets")
FLAGS = ("hardware", "marker")  # what the variants read besides the images, labels and patients


def _generated(cfg: synthetic.SyntheticConfig, site: int) -> dict[str, np.ndarray]:
    """(images as the site renders them, labels, patients, the drawn hardware and markers): a pure function of
    (cfg, site), so made (or read from disk) once per process: a study opens its data for every run, and the
    external site for every run's shift evaluation (rendering a site costs more than reading the set)."""
    key = (json.dumps(cfg.__dict__, sort_keys=True), site)
    kept = GENERATED.get(key)
    if kept is not None:
        return dict(zip(("images", "labels", "patients", *FLAGS), kept))
    arrays = load_or_generate(cfg)
    images = arrays["images"]
    if site:
        from .corruptions import render_site  # cv2: only another synthetic site needs it

        images = render_site(images, site)
    out = (images, arrays["labels"], arrays["patients"], *(arrays[f] for f in FLAGS))
    GENERATED.put(key, *out)
    return dict(zip(("images", "labels", "patients", *FLAGS), out))


def load_or_generate(cfg: synthetic.SyntheticConfig) -> dict[str, np.ndarray]:
    key = hashlib.sha256(json.dumps(cfg.__dict__, sort_keys=True).encode()).hexdigest()[:12]
    path = data_dir() / "synthetic" / f"synthetic-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("images", "labels", "patients", *FLAGS)}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged file, or one written before the variants' flags were kept: generate again
    arrays = synthetic.generate(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return arrays
