"""DICOM radiographs, straight from a PACS export: decoded once into the same uint8 cache as PNGs.

The stored pixel data, whatever its bit depth (8, 12, 16; signed or not), goes through the modality LUT
(Rescale Slope/Intercept), then the VOI window: the file's first Window Center/Width (DICOM's LINEAR
function, PS3.3 C.11.2.1.2), or its VOI LUT; where neither is there, a robust percentile window (0.5-99.5 %).
MONOCHROME1 is inverted, so that bone is bright as a radiologist sees it. A multi-frame file gives its first
frame. Compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) decode through pydicom's pixel handlers
(pylibjpeg and its plugins).

Privacy: the Patient ID is used only to keep a patient's images in one split, and only as a hash; no name,
ID or other identifying tag is logged, stored in an event, a cache's metadata or a table.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError

PERCENTILES = (0.5, 99.5)


def is_dicom(path: Path) -> bool:
    """A ``.dcm`` file, or any file with DICOM's 'DICM' marker after its 128-byte preamble."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: Path):
    import pydicom  # pydicom: only DICOM files need it

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure on a damaged file
        raise DataError(f"not a readable DICOM file: {path} ({exc.__class__.__name__})") from None


def patient_group(ds) -> str | None:
    """A hash of the Patient ID (0010,0020), or None without one: the split key, never shown."""
    pid = str(getattr(ds, "PatientID", "") or "").strip()
    return "patient:" + hashlib.sha256(pid.encode()).hexdigest()[:16] if pid else None


def windowing_source(ds) -> str:
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return "window center/width"
    if "VOILUTSequence" in ds:
        return "VOI LUT"
    return "percentile window"


def transfer_syntax(ds) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return uid.name if uid is not None else "unknown"


def describe(ds) -> dict:
    """What ``data check`` counts for one file (no identifying tag)."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    return {"modality": str(getattr(ds, "Modality", "") or "unknown"),
            "bits_stored": str(getattr(ds, "BitsStored", "?")),
            "signed": bool(getattr(ds, "PixelRepresentation", 0)),
            "photometric": str(getattr(ds, "PhotometricInterpretation", "") or "unknown"),
            "transfer_syntax": transfer_syntax(ds), "windowing": windowing_source(ds), "multi_frame": frames > 1}


def _first(value) -> float:
    """A tag value that may be multi-valued (several windows): its first value."""
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def voi_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's LINEAR VOI function into [0, 1]: the window's edges go to 0 and 1."""
    width = max(width, 1.0)
    y = (values - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(y, 0.0, 1.0)


def percentile_window(values: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(values, PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def decode_dicom(path: Path) -> np.ndarray:
    """One DICOM file to a 2-D uint8 grayscale image (see the module's docstring). Raises DataError."""
    import pydicom  # pydicom: only DICOM files need it
    from pydicom.pixels import apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"not a readable DICOM file: {path} ({exc.__class__.__name__})") from None
    if "PixelData" not in ds:
        raise DataError(f"DICOM file without an image: {path}")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - a missing or failing pixel handler
        raise DataError(f"cannot decode {path} (transfer syntax {transfer_syntax(ds)}): "
                        f"{str(exc).splitlines()[0][:160]}") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if frames > 1:
        arr = arr[0]
    if arr.ndim == 3:  # a colour DICOM (RGB or YBR): its luminance
        if photometric.startswith("YBR"):
            arr = arr[..., 0]
        else:
            arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        photometric = "MONOCHROME2"
    if arr.ndim != 2 or arr.size == 0:
        raise DataError(f"DICOM image of shape {arr.shape} is not a 2-D radiograph: {path}")
    values = arr.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + \
        float(getattr(ds, "RescaleIntercept", 0) or 0)
    source = windowing_source(ds)
    if source == "window center/width":
        y = voi_window(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    elif source == "VOI LUT":
        lut = np.asarray(apply_voi_lut(arr, ds), dtype=np.float64)
        hi = float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1) if "LUTDescriptor" in ds.VOILUTSequence[0] \
            else float(lut.max() or 1)
        y = np.clip(lut / max(hi, 1.0), 0.0, 1.0)
    else:
        y = percentile_window(values)
    if photometric == "MONOCHROME1":  # low values are white: shown inverted, as on a reading screen
        y = 1.0 - y
    return np.round(y * 255.0).astype(np.uint8)


class DicomStats:
    """Counts of what a set of DICOM files holds (modality, bit depths, photometric interpretations,
    transfer syntaxes, windowing sources, multi-frame files), for ``data check``."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {k: Counter() for k in
                                           ("modality", "bits_stored", "signed", "photometric", "transfer_syntax",
                                            "windowing", "multi_frame")}
        self.files = 0

    def add(self, info: dict) -> None:
        self.files += 1
        for key, counter in self.counts.items():
            counter[str(info[key]).lower() if isinstance(info[key], bool) else str(info[key])] += 1

    def summary(self) -> dict:
        return {"files": self.files, **{k: dict(sorted(c.items())) for k, c in self.counts.items()}}
