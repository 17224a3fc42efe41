"""Checks that run before anything is queued, so that what can be known in advance never becomes a failed run:
model names, whether each model takes the image size, the local weights file, and the data source.

What cannot be known in advance (a corrupt image among 40,000) fails the run later, with a reason that
says what to fix.
"""
from __future__ import annotations

from typing import Iterable

from .data.config import open_source
from .models.names import check_names
from .runspec import RunSpec


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


def preflight(specs: Iterable[RunSpec], check_data: bool = True, decode: bool = False) -> None:
    """Raise a one-line KDError for the first problem found; quiet when all is well.

    ``decode``: also decode each data config's images into the cache (the runs reuse it: no work is done twice)
    and require usable train and val images, so that a run is never created for data training would refuse."""
    every = _all_specs(specs)
    check_names({s.model for s in every})  # torch-free first: a mistyped name is refused at once
    # timm and torch, on the meta device (the store's readers never need them)
    from .models.factory import check_buildable, check_pretrained_reachable, check_weights_file
    shapes = sorted({(s.model, s.train.pretrained, s.data.image_size) for s in every})
    for model, pretrained, size in shapes:
        check_buildable(model, size, pretrained)
    for path, model in sorted({(s.train.pretrained_from, s.model) for s in every if s.train.pretrained_from}):
        check_weights_file(path, model)
    for model in sorted({s.model for s in every if s.train.pretrained and not s.train.pretrained_from}):
        check_pretrained_reachable(model)
    if check_data:
        for data in sorted({s.data for s in every}, key=repr):
            source = open_source(data)
            if decode:
                from .data.cache import build_or_load, require_usable  # cv2: decoding images

                require_usable(build_or_load(source, data.image_size, skip_bad=data.skip_bad), source)
