"""``folder:PATH``: a folder of class sub-folders (``<class>/<image>``), or of train/val/test each holding them."""
from __future__ import annotations

from pathlib import Path

from ..source import register_source


@register_source("folder", folders=True, rank=20)
def open_folder(arg: str, cfg):
    from ..files import FolderSource  # each kind loads its readers (images, DICOM) when it is opened

    return FolderSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                        split_seed=cfg.split_seed, colour=cfg.color == "rgb")
