"""Checks that run before anything is queued, so that what can be known in advance never becomes a failed run:
model names, whether each model takes the image size, the local weights file, and the data source.

What cannot be known in advance (a corrupt image among 40,000) fails the run later, with a reason that
says what to fix.
"""
from __future__ import annotations

from typing import Iterable

from .runspec import RunSpec
from .data.config import open_source


def _all_specs(specs: Iterable[RunSpec]) -> list[RunSpec]:
    out, seen = [], set()
    stack = list(specs)
    while stack:
        s = stack.pop()
        if s.run_id in seen:
            continue
        seen.add(s.run_id)
        out.append(s)
        stack.extend(s.teachers)
    return out


def preflight(specs: Iterable[RunSpec], check_data: bool = True) -> None:
    """Raise a one-line KDError for the first problem found; quiet when all is well."""
    from .models.factory import check_buildable, check_weights_file  # timm and torch, on the meta device: the store's readers never need them

    every = _all_specs(specs)
    shapes = sorted({(s.model, s.train.pretrained, s.data.image_size) for s in every})
    for model, pretrained, size in shapes:
        check_buildable(model, size, pretrained)
    for path, model in sorted({(s.train.pretrained_from, s.model) for s in every if s.train.pretrained_from}):
        check_weights_file(path, model)
    if check_data:
        for data in {s.data for s in every}:
            open_source(data)
