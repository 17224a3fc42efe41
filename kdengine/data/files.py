"""Sources made of image files on disk: an ImageFolder tree, and MURA-v1.1."""
from __future__ import annotations

import csv
import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .dicom import DicomStats, decode_dicom, describe, is_dicom, patient_group, read_header
from .source import SPLITS, Skipped, Source, SplitIndex
from .splits import cap_per_class, grouped_split

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
DICOM_EXTS = {".dcm", ".dicom"}


def _dicom_magic(path: Path) -> bool:
    return path.is_file() and is_dicom(path)
MURA_PARTS = ("ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST")
_STUDY = re.compile(r"^study\d+_(positive|negative)$")


def is_hidden(name: str) -> bool:
    """Hidden files and the ``._*`` resource forks macOS leaves in archives."""
    return name.startswith(".")


MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any radiograph, far below a decompression bomb


def decode_gray(path: str | os.PathLike, rgb: bool = False, info: dict | None = None) -> np.ndarray:
    """Decode any 8/16-bit, grayscale/RGB/palette image to 2-D uint8 (``rgb``: H x W x 3 uint8). Raises DataError.

    The size in the header is checked before any pixel is decoded: a file that claims 20000 x 20000 pixels
    is refused, not decoded into 400 MB. Any failure of the decoder on hostile or damaged bytes is a
    DataError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise DataError(f"image too large: {path} claims {w} x {h} pixels (kdstudy's limit is "
                                    f"{MAX_PIXELS // 1_000_000} Mpx; use --skip-bad to skip it)")
                if w < 1 or h < 1:
                    raise DataError(f"empty image: {path} has {w} x {h} pixels")
                im.load()
                if info is not None:  # what the file was, for data check: colour bands, read grey or not
                    info["colour"] = len(im.getbands()) >= 3
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
                    lo, hi = float(arr.min()), float(arr.max())
                    return ((arr - min(lo, 0.0)) / ((hi - min(lo, 0.0)) or 1.0) * 255 + 0.5).astype(np.uint8)
                return np.asarray(im.convert("RGB" if rgb else "L"), dtype=np.uint8)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"image too large to decode: {path}") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(f"image too large: {path} ({exc}; use --skip-bad to skip it)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"corrupt or unreadable image: {path} ({exc.__class__.__name__})") from None
    except Exception as exc:  # noqa: BLE001 - a decoder meeting hostile bytes can raise anything
        raise DataError(f"corrupt or unreadable image: {path} ({exc.__class__.__name__})") from None


def decode_file(path: str | os.PathLike, rgb: bool = False, info: dict | None = None) -> np.ndarray:
    """Any image file kdstudy reads (PNG, JPEG, ..., or DICOM) to 2-D uint8 (``rgb``: an image file's colour, H x W x 3;
    a DICOM stays grey and the cache replicates it). Raises DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: a link to a file that does not exist")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    if p.suffix.lower() in IMAGE_EXTS:
        return decode_gray(p, rgb, info)

    if is_dicom(p):
        return decode_dicom(p)
    return decode_gray(p, rgb, info)


class FileSource(Source):
    """A ref is an absolute path string (an image file or a DICOM file)."""

    def load(self, ref: Any) -> np.ndarray:
        return decode_file(ref, rgb=self.channels == 3)

    def load_seen(self, ref: Any) -> tuple[np.ndarray, bool]:
        info: dict = {}
        img = decode_file(ref, rgb=self.channels == 3, info=info)
        return img, info.get("colour", img.ndim == 3)

    def note_dicom(self, path: Path) -> str | None:
        """Count a DICOM file's properties for ``data check``; return its patient group (a hash), if any."""
        if self.dicom_stats is None:
            self.dicom_stats = DicomStats()
        ds = read_header(path)
        self.dicom_stats.add(describe(ds))
        return patient_group(ds)

    def finish_dicom_notes(self) -> None:
        stats = self.dicom_stats
        if stats is None:
            return
        multi = stats.counts["multi_frame"].get("true", 0)
        if multi:
            self.notes.append(f"{multi} multi-frame DICOM file(s): the first frame of each is used")
        windows = ", ".join(f"{n} {k}" for k, n in sorted(stats.counts["windowing"].items()))
        self.notes.append(f"{stats.files} DICOM file(s) decoded with: {windows}")

    def fingerprint(self) -> str:
        """Paths, sizes and modification times of every indexed file (cheap: one stat each)."""
        h = hashlib.sha256(self.kind.encode())
        for split in SPLITS:
            idx = self.splits[split]
            h.update(split.encode())
            for ref, label in zip(idx.refs, idx.labels):
                try:
                    st = os.stat(ref) if os.path.exists(ref) else os.lstat(ref)  # a dangling link: itself
                except OSError as exc:
                    raise DataError(f"{ref}: {exc.strerror.lower()} (was it moved while kdstudy read the data?)") from None
                h.update(f"{ref}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


def _images_in(folder: Path, skipped: list[Skipped]) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for f in sorted(files):
            p = Path(root) / f
            if is_hidden(f):
                skipped.append(Skipped(str(p), "hidden or macOS metadata file"))
            elif p.suffix.lower() in IMAGE_EXTS or p.suffix.lower() in DICOM_EXTS or (not p.suffix and _dicom_magic(p)):
                out.append(p)  # one that cannot be read (a dangling link) fails like a corrupt image, or is
                # counted under --skip-bad: never skipped in silence
    return out


class FolderSource(FileSource):
    """``root/<class>/*.png`` (split stratified), or ``root/{train,val,test}/<class>/...``."""

    kind = "folder"

    def __init__(self, root: Path, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 split_seed: int = 0, colour: bool = False) -> None:
        super().__init__()
        self.channels = 3 if colour else 1
        self.description = f"folder:{root}"
        if not root.is_dir():
            raise DataError(f"folder: no such directory: {root}")
        split_dirs = {s: root / s for s in ("train", "val", "valid", "test") if (root / s).is_dir()}
        if "train" in split_dirs:
            if "test" not in split_dirs:
                raise DataError(f"folder: {root} has train/ but no test/ folder (expected {root / 'test'})")
            self.class_names = self._classes(split_dirs["train"])
            for split, folder in (("train", split_dirs["train"]), ("test", split_dirs["test"]),
                                  ("val", split_dirs.get("val") or split_dirs.get("valid"))):
                if folder is not None:
                    self._add(folder, split)
            if not len(self.splits["val"]):
                self.splits["train"], self.splits["val"] = grouped_split(self.splits["train"], val_fraction, split_seed)
                self.notes.append(f"no val/ folder: {val_fraction:.0%} of train carved out as val (stratified)")
        else:
            self.class_names = self._classes(root)
            self._add(root, "train")
            pool = self.splits["train"]
            rest, self.splits["test"] = grouped_split(pool, test_fraction, split_seed + 1)
            self.splits["train"], self.splits["val"] = grouped_split(rest, val_fraction / (1 - test_fraction), split_seed)
            self.notes.append(f"one tree: split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%} (stratified)")
        self.finish_dicom_notes()

    def _classes(self, folder: Path) -> list[str]:
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not is_hidden(d.name))
        if not classes:
            raise DataError(f"folder: {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
        return classes

    def _add(self, folder: Path, split: str) -> None:
        for label, name in enumerate(self.class_names):
            cdir = folder / name
            if not cdir.is_dir():
                continue  # validate() names the class missing from this split
            for p in _images_in(cdir, self.skipped):
                group = None
                if p.suffix.lower() not in IMAGE_EXTS:  # a DICOM file: its patient keeps its images together
                    try:
                        group = self.note_dicom(p)
                    except DataError as exc:
                        self.skipped.append(Skipped(str(p), str(exc)))
                        continue
                # Without a patient, each image is its own group.
                self.splits[split].add(str(p), label, group or str(p))


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [row for row in csv.reader(fh) if row]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (MURA's CSV files are plain ASCII; is the file damaged?)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None


class MuraSource(FileSource):
    """An unmodified MURA-v1.1 download.

    Tasks: ``body_part`` (7 classes, the thesis's task) and ``abnormality``
    (normal/abnormal; each image inherits its study's label). The public
    ``valid/`` split is the test set; val is carved out of ``train/`` by patient.
    """

    kind = "mura"

    def __init__(self, path: Path, task: str = "body_part", val_fraction: float = 0.15,
                 split_seed: int = 0, cap_train: int | None = None, cap_test: int | None = None) -> None:
        super().__init__()
        root = path / "MURA-v1.1" if (path / "MURA-v1.1").is_dir() else path
        self.description = f"mura:{root} ({task})"
        if not root.is_dir():
            raise DataError(f"mura: no such directory: {path}")
        if task not in ("body_part", "abnormality"):
            raise DataError(f"mura: unknown task '{task}' (choose body_part or abnormality)")
        for sub in ("train", "valid"):
            if not (root / sub).is_dir():
                raise DataError(f"mura: {root} is not a MURA-v1.1 folder: expected the folder {root / sub}")
        self.task = task
        self.class_names = [p.lower() for p in MURA_PARTS] if task == "body_part" else ["normal", "abnormal"]
        study_labels = self._study_labels(root)
        pools = {}
        for sub in ("train", "valid"):
            pools[sub] = self._index(root, sub, study_labels)
        train_pool = cap_per_class(pools["train"], cap_train, split_seed)
        self.splits["test"] = cap_per_class(pools["valid"], cap_test, split_seed)
        self.splits["train"], self.splits["val"] = grouped_split(train_pool, val_fraction, split_seed)
        if cap_train or cap_test:
            self.notes.append(f"capped per class: train+val pool {cap_train or 'all'}, test {cap_test or 'all'}")
        self.notes.append("test = MURA's public valid/ split; val = patients carved out of train/")

    def _study_labels(self, root: Path) -> dict[str, int]:
        labels: dict[str, int] = {}
        for sub in ("train", "valid"):
            csv_path = root / f"{sub}_labeled_studies.csv"
            if not csv_path.is_file():
                self.notes.append(f"{csv_path.name} missing: study labels taken from the folder names")
                continue
            for row in _read_csv_rows(csv_path):
                if len(row) < 2 or not row[1].strip().isdigit():
                    raise DataError(f"mura: {csv_path}: malformed row {row!r} (expected 'path,label')")
                labels[row[0].strip().rstrip("/").split("MURA-v1.1/", 1)[-1]] = int(row[1])
        return labels

    def _index(self, root: Path, sub: str, study_labels: dict[str, int]) -> SplitIndex:
        csv_path = root / f"{sub}_image_paths.csv"
        listed: set[str] | None = None
        if csv_path.is_file():
            listed = {r[0].strip().split("MURA-v1.1/", 1)[-1] for r in _read_csv_rows(csv_path)}
        else:
            self.notes.append(f"{csv_path.name} missing: images found by walking {sub}/")
        idx = SplitIndex()
        found: set[str] = set()
        part_dirs = sorted(d for d in (root / sub).iterdir() if d.is_dir() and not is_hidden(d.name))
        if not any(d.name.startswith("XR_") for d in part_dirs):
            raise DataError(f"mura: {root / sub} holds no XR_<PART> folders (expected e.g. {root / sub / 'XR_ELBOW'})")
        for part_dir in part_dirs:
            part = part_dir.name.removeprefix("XR_")
            if part not in MURA_PARTS:
                self.skipped.append(Skipped(str(part_dir), "not a MURA body part folder"))
                continue
            for img in _images_in(part_dir, self.skipped):
                rel = img.relative_to(root).as_posix()
                study_dir = img.parent
                patient = study_dir.parent.name
                m = _STUDY.match(study_dir.name)
                if not patient.startswith("patient") or m is None:
                    self.skipped.append(Skipped(str(img), "not in patientNNNNN/studyN_{positive,negative}/"))
                    continue
                if listed is not None and rel not in listed:
                    self.skipped.append(Skipped(str(img), f"not listed in {csv_path.name}"))
                    continue
                found.add(rel)
                if self.task == "body_part":
                    label = MURA_PARTS.index(part)
                else:
                    study_key = study_dir.relative_to(root).as_posix()
                    label = study_labels.get(study_key, 1 if m.group(1) == "positive" else 0)
                idx.add(str(img), label, patient)
        if listed is not None and listed and not found and len(idx) == 0:
            raise DataError(f"mura: {csv_path} lists none of the images under {root / sub} (is it the right file, "
                            "or damaged?)")
        if listed is not None:
            for rel in sorted(listed - found):
                if not any(is_hidden(part) for part in rel.split("/")):
                    self.skipped.append(Skipped(str(root / rel), f"listed in {csv_path.name} but missing on disk"))
        return idx
