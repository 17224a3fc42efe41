"""``npz:PATH``: images and labels in one NumPy archive (MedMNIST's layout, among others)."""
from __future__ import annotations

from pathlib import Path

from ..source import register_source


@register_source("npz", suffixes=(".npz",), file_word="an .npz", rank=30)
def open_npz(arg: str, cfg):
    from ..arrays import NpzSource  # each kind loads its readers when it is opened

    return NpzSource(Path(arg), val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, color=cfg.color,
                     uncertain=cfg.uncertain, cap_train=cfg.cap_train, cap_test=cfg.cap_test)
