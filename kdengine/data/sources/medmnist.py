"""``medmnist:NAME[@SIZE]``: one of MedMNIST+'s twelve 2D datasets by name, read from its official file in
``$MEDMNIST_ROOT`` (``data/medmnist.py``)."""
from __future__ import annotations

from ..source import register_source


@register_source("medmnist", "medmnist:NAME[@SIZE]", paths=False, rank=35)
def open_medmnist(arg: str, cfg):
    from ...errors import DataError
    from ..medmnist import MedmnistSource  # each kind loads its readers when it is opened

    if not arg:
        raise DataError("medmnist: name a dataset, e.g. medmnist:chestmnist@64")
    return MedmnistSource(arg, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, color=cfg.color,
                          uncertain=cfg.uncertain, cap_train=cfg.cap_train, cap_test=cfg.cap_test,
                          image_size=cfg.image_size)
