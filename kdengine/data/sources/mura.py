"""``mura:PATH``: the MURA-v1.1 release (its CSV files and XR_* folders), by body part or normal/abnormal."""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..source import register_source


def is_mura(path: Path) -> bool:
    """A folder laid out as MURA: MURA-v1.1 inside, or train/ and valid/ with XR_* body-part folders."""
    return (path / "MURA-v1.1").is_dir() or ((path / "train").is_dir() and (path / "valid").is_dir()
                                             and any(p.name.startswith("XR_") for p in (path / "train").iterdir()))


@register_source("mura", infer=is_mura, tasks=True, rank=10)
def open_mura(arg: str, cfg):
    from ..files import MuraSource  # each kind loads its readers (images, DICOM) when it is opened

    if cfg.color == "rgb":
        raise DataError("mura: radiographs are grey (some are saved as RGB); data.color rgb does not apply")

    return MuraSource(Path(arg), task=cfg.task, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                      cap_train=cfg.cap_train, cap_test=cfg.cap_test)
