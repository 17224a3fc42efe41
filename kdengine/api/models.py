"""Models: the catalogue (the thesis's architectures and the tiny test models) and any timm name's size.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import UsageError
from ..models.architectures import APPROX_PARAMS, PRETRAINED_ALIASES, THESIS, TINY
from ..models.names import check_name as _check_name


@dataclass(frozen=True)
class ModelEntry:
    name: str
    group: str  # thesis or tiny
    params: int
    pretrained_as: str  # the timm name whose weights it loads (its own name where timm has them)


def check_name(name: str) -> str:
    """``name`` if timm knows it (its names without torch: milliseconds); else one line naming the closest ones."""
    return _check_name(name)


def check_names(names: Iterable[str]) -> None:
    for name in sorted(names):
        _check_name(name)


def model_params(name: str, classes: int = 7) -> int:
    """Parameters of ``name`` with ``classes`` outputs and one input channel: the catalogue's count without torch,
    timm's for any other name (a mistyped one is refused first, torch-free)."""
    if not 1 <= classes <= 100_000:
        raise UsageError(f"the number of classes must lie in [1, 100000], got {classes}", field="classes")
    _check_name(name)
    if classes == 7 and name in APPROX_PARAMS:
        return APPROX_PARAMS[name]
    from ..models.factory import count_params  # timm and torch: a model outside the catalogue, or other classes

    return count_params(name, classes)


def model_catalogue(classes: int = 7) -> list[ModelEntry]:
    return [ModelEntry(name, group, model_params(name, classes), PRETRAINED_ALIASES.get(name, name))
            for group, names in (("thesis", THESIS), ("tiny", TINY)) for name in names]
