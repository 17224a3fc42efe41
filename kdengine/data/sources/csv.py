"""``csv:PATH``: a manifest of image paths with their labels (and, where known, patients and splits)."""
from __future__ import annotations

from pathlib import Path

from ..source import register_source


@register_source("csv", suffixes=(".csv",), file_word="a .csv manifest", rank=40)
def open_csv(arg: str, cfg):
    from ..manifest import CsvSource  # each kind loads its readers (images, DICOM) when it is opened

    return CsvSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                     split_seed=cfg.split_seed, uncertain=cfg.uncertain, colour=cfg.color == "rgb")
