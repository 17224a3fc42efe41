"""The decoded-image cache: every image decoded once into a memory-mapped uint8 array.

Images are letterboxed (aspect kept, centred on a black square) at the configured size, in split order (train,
val, test): grey (N, S, S) for a grey source, RGB (N, S, S, 3) for a colour one, so a grey study's cache is what it
always was. Labels are class numbers (N,), or for a multi-label source 0/1 per finding (N, K), -1 where not known. The
cache is keyed by the source's fingerprint and the size, so it is rebuilt when
the source changes. The array is written under a temp name and renamed; the
metadata file is written last, atomically, and a cache without it is never used.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..atomic import atomic_path, disk_errors, write_json
from ..errors import DataError
from ..paths import cache_dir
from .source import SPLITS, Skipped, Source
from .unreadable import way_out

CACHE_VERSION = 1


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the longest side to ``size`` and centre on a black ``size`` x ``size`` square (grey or RGB)."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    out = np.zeros((size, size, *img.shape[2:]), np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = img
    return out


@dataclass
class DecodedCache:
    images: np.ndarray  # (N, size, size) uint8, memory-mapped; (N, size, size, 3) for a colour source
    valid: np.ndarray  # (N,) bool: False for images that could not be decoded
    split_slices: dict[str, slice]
    labels: np.ndarray  # (N,) int64; (N, K) int8 for a multi-label source (1, 0, -1 where not known)
    size: int
    path: Path
    hit: bool
    channels: int = 1  # 1 grey, 3 RGB
    seen: dict | None = None  # what the files were before letterboxing (``_Seen``); None for a cache built before

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    def chw(self, block: np.ndarray) -> np.ndarray:
        """Rows of the cache as (B, C, S, S), the layout a model reads."""
        return block[:, None] if self.channels == 1 else block.transpose(0, 3, 1, 2)

    def rows(self, split: str) -> np.ndarray:
        """Row numbers of the usable images of one split."""
        s = self.split_slices[split]
        return np.arange(s.start, s.stop)[self.valid[s]]


def require_usable(cache: "DecodedCache", source: Source) -> None:
    """The verdict training will reach: a split with no readable image (train or val) cannot be trained on."""
    empty = [s for s in ("train", "val") if len(cache.rows(s)) == 0]
    if not empty:
        return
    unreadable = int((~cache.valid).sum())
    first = f"; first: {source.skipped[-unreadable].path}: {source.skipped[-unreadable].reason}" if unreadable and \
        len(source.skipped) >= unreadable else ""
    raise DataError(f"{source.description}: no usable {' or '.join(empty)} images ({unreadable} of "
                    f"{len(cache.valid)} files could not be read{first})")


def usable_counts(cache: "DecodedCache", source: Source) -> dict[str, dict]:
    """Per split: the images training will use (readable ones), per class, the groups (patients) they come from,
    and how many files could not be read: a patient whose every image is unreadable is no group of the split."""
    out = {}
    for split in SPLITS:
        rows = cache.rows(split)
        labels = cache.labels[rows]
        s = cache.split_slices[split]
        readable = cache.valid[s]
        groups = {g for g, ok in zip(source.splits[split].groups, readable) if ok}
        per_class = (labels == 1).sum(0) if cache.multilabel else \
            [(labels == c).sum() for c in range(len(source.class_names))]
        out[split] = {"images": int(len(rows)), "groups": len(groups), "unreadable": int((~readable).sum()),
                      "per_class": {name: int(v) for name, v in zip(source.class_names, per_class)}}
    return out


def cache_key(source: Source, size: int) -> str:
    colour = "|rgb" if source.channels == 3 else ""  # a grey source's key is what it always was
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{source.fingerprint()}{colour}".encode())
    for split in SPLITS:  # the order of the rows is part of the content
        h.update(json.dumps([split, [str(r) for r in source.splits[split].refs]]).encode())
    return h.hexdigest()[:24]


def build_or_load(source: Source, size: int, skip_bad: bool = False, root: Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> DecodedCache:
    """Return the cache for ``source`` at ``size``, decoding only when it is missing or stale."""
    if size < 8:
        raise DataError(f"image size {size} is too small (at least 8)")
    root = root or cache_dir()
    key = cache_key(source, size)
    data_path, meta_path = root / f"{key}.u8", root / f"{key}.json"
    refs = source.all_refs()
    every = [y for s in SPLITS for y in source.splits[s].labels]
    labels = (np.asarray(every, np.int8).reshape(len(every), len(source.class_names)) if source.multilabel
              else np.asarray(every, np.int64))
    channels = source.channels
    bounds, start = {}, 0
    for split in SPLITS:
        bounds[split] = slice(start, start + len(source.splits[split]))
        start += len(source.splits[split])
    n = len(refs)

    meta = _read_meta(meta_path, n, size, data_path, channels)
    hit = meta is not None
    if meta is None:
        seen = _Seen()
        bad = _build(source, refs, size, data_path, skip_bad, progress, channels, seen)
        meta = {"version": CACHE_VERSION, "n": n, "size": size, "fingerprint": source.fingerprint(),
                **({"channels": channels} if channels != 1 else {}),
                "description": source.description, "bad": bad, "notes": list(source.notes), "seen": seen.as_dict()}
        if source.dicom_stats is not None:  # what was done to the DICOMs: windowing, inversion, frames
            meta["dicom"] = source.dicom_stats.summary()
        write_json(meta_path, meta)
    bad = {int(k): v for k, v in meta["bad"].items()}
    if bad and not skip_bad:
        first = min(bad)
        raise DataError(f"{bad[first]} {way_out(len(bad))}")
    valid = np.ones(n, bool)
    for i, reason in bad.items():
        valid[i] = False
        source.skipped.append(Skipped(source.ref_name(refs[i]), reason))
    shape = image_shape(n, size, channels)
    images = np.memmap(data_path, np.uint8, mode="r", shape=shape) if n else np.zeros(shape, np.uint8)
    return DecodedCache(images, valid, bounds, labels, size, data_path, hit, channels, meta.get("seen"))


class _Seen:
    """What the decoded files were: how many had colour channels and how many were grey, and their sizes (width x
    height, with counts), as `data check` says it ("1 RGB image among 299 grey; sizes 64x64 and 100x80")."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.colour = self.grey = 0
        self._lock = threading.Lock()  # the decoding threads add to it

    def add(self, img: np.ndarray, colour: bool) -> None:
        key = f"{img.shape[1]}x{img.shape[0]}"  # width x height, as image sizes are said
        with self._lock:
            self.sizes[key] = self.sizes.get(key, 0) + 1
            if colour:
                self.colour += 1
            else:
                self.grey += 1

    def as_dict(self) -> dict:
        return {"colour": self.colour, "grey": self.grey,
                "sizes": dict(sorted(self.sizes.items(), key=lambda kv: (-kv[1], kv[0])))}


def image_shape(n: int, size: int, channels: int = 1) -> tuple[int, ...]:
    return (n, size, size) if channels == 1 else (n, size, size, channels)


def _read_meta(meta_path: Path, n: int, size: int, data_path: Path, channels: int = 1) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    ok = (meta.get("version") == CACHE_VERSION and meta.get("n") == n and meta.get("size") == size
          and meta.get("channels", 1) == channels and data_path.is_file()
          and data_path.stat().st_size == n * size * size * channels)
    return meta if ok else None


def as_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """A decoded image as the cache holds it: grey (H, W) for a grey source, RGB (H, W, 3) for a colour one (a grey
    image among colour ones is replicated; an RGB one in a grey source is made grey as before)."""
    if channels == 3:
        if img.ndim == 2:
            return np.repeat(img[..., None], 3, axis=2)
        return img[..., :3]
    if img.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    return img


def _build(source: Source, refs: list, size: int, data_path: Path, skip_bad: bool,
           progress: Callable[[int, int], None] | None, channels: int = 1,
           seen: "_Seen | None" = None) -> dict[str, str]:
    n = len(refs)
    cells = n * size * size * channels
    bad: dict[str, str] = {}
    with atomic_path(data_path) as tmp, disk_errors(data_path):
        if n == 0:
            return bad
        # Reserve the space first: writing pages of a sparse memmap onto a full disk kills the process
        # with SIGBUS; a reservation fails cleanly with ENOSPC instead.
        with open(tmp, "r+b") as fh:
            try:
                os.posix_fallocate(fh.fileno(), 0, cells)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                fh.truncate(cells)  # a file system that cannot reserve: sparse, as before
        out = np.memmap(tmp, np.uint8, mode="r+", shape=image_shape(n, size, channels))

        def work(i: int, out: np.ndarray = out) -> None:
            try:
                img, colour = source.load_seen(refs[i])
                out[i] = letterbox(as_channels(img, channels), size)
                if seen is not None:
                    seen.add(img, colour)
            except DataError as exc:
                if not skip_bad:
                    raise DataError(f"{exc} {way_out()}") from None
                bad[str(i)] = str(exc)

        workers = min(8, os.cpu_count() or 1)
        done = 0
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(work, range(n), chunksize=64 if n > 1024 else 1):
                done += 1
                if progress and (done % 256 == 0 or done == n):
                    progress(done, n)
        out.flush()
        del out
    return bad


_NBYTES: dict = {}


def cached_nbytes(cfg) -> int | None:
    """The decoded cache's size in bytes for a DataConfig (every split's images, size x size uint8), from its
    source's index (no image is decoded); None when the source cannot be read. Remembered per configuration:
    packing's admission asks it at every claim."""
    key = cfg  # frozen: the configuration itself
    if key not in _NBYTES:
        from .config import open_source  # the source's index: only where a device-resident cache is planned

        try:
            source = open_source(cfg)
            _NBYTES[key] = len(source.all_refs()) * cfg.image_size ** 2 * source.channels
        except Exception:  # noqa: BLE001 - an estimate: unreadable data fails the run itself, with its reason
            _NBYTES[key] = None
    return _NBYTES[key]
