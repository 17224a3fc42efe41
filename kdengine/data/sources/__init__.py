"""The kinds of data source ``--data`` names, one module each; every module here registers its kind with
``@register_source`` (``data/source.py``) when this package is imported, so that a new kind is one new file.

The modules stay light (no image readers): each opener imports its source's readers when it is called."""
from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
