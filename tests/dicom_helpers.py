"""DICOM fixtures written with pydicom's own writer (no download, no patient data: the identifiers are made up)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PATIENT_NAME = "Doe^Jane^Fixture"
PATIENT_ID = "PID-SECRET-4711"


def write_dicom(path: Path, pixels: np.ndarray, *, bits: int = 16, signed: bool = False, slope: float = 1.0,
                intercept: float = 0.0, window: tuple[float, float] | None = None,
                photometric: str = "MONOCHROME2", patient_id: str = PATIENT_ID, modality: str = "CR",
                compress: str | None = None) -> Path:
    """``pixels``: (H, W) or (frames, H, W) stored values. ``compress``: a transfer syntax UID to encode with."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.Modality = modality
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[
        (ds.BitsAllocated, signed)]
    ds.PixelData = pixels.astype(dtype).tobytes()
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if compress:
        ds.compress(compress)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def radiograph(seed: int, side: int = 48, bits: int = 12, cls: int = 0) -> np.ndarray:
    """A made-up radiograph: a bright 'bone' whose shape depends on the class, on a darker background."""
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    yy, xx = np.mgrid[:side, :side]
    img = rng.normal(0.15 * top, 0.03 * top, (side, side))
    cx, cy = side / 2 + rng.normal(0, 2), side / 2 + rng.normal(0, 2)
    if cls == 0:
        mask = (np.abs(xx - cx) < side * 0.08) & (np.abs(yy - cy) < side * 0.4)
    elif cls == 1:
        mask = (np.abs(yy - cy) < side * 0.08) & (np.abs(xx - cx) < side * 0.4)
    else:
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (side * 0.25) ** 2
    img[mask] = rng.normal(0.8 * top, 0.05 * top, mask.sum())
    return np.clip(img, 0, top)
