"""``synthetic`` (``synthetic:images=700,difficulty=0.6,seed=1,site=2``): generated radiograph-like images of seven
classes, for tests, demos and CPU smoke runs."""
from __future__ import annotations

from typing import Any

from ...errors import DataError
from ..source import register_source

OPTIONS = {"images": int, "difficulty": float, "seed": int, "site": int}


def synthetic_options(arg: str) -> dict[str, Any]:
    """The generator's settings and the acquisition site from ``images=N,difficulty=D,seed=S,site=K``."""
    from ..corruptions import SITES  # cv2 (100 ms): the launch form parses sources as they are typed
    from ..synthetic import SyntheticConfig  # cv2, as above

    opts: dict[str, Any] = {}
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in OPTIONS:
            raise DataError(f"synthetic: bad option '{part}' (options: images=N, difficulty=0..1, seed=N, site=0..3)")
        try:
            opts[key.strip()] = OPTIONS[key.strip()](value)
        except ValueError:
            raise DataError(f"synthetic: {key} must be a number, got '{value}'") from None
    site = opts.pop("site", 0)

    if site != 0 and site not in SITES:
        raise DataError(f"synthetic: site must be 0 (the reference) or one of {', '.join(map(str, SITES))}, got {site}")
    try:
        return {"cfg": SyntheticConfig(**opts), "site": site}
    except ValueError as exc:
        raise DataError(str(exc)) from None


@register_source("synthetic", "synthetic", paths=False, rank=0)
def open_synthetic(arg: str, cfg):
    from ..arrays import SyntheticSource  # each kind loads its readers (images, DICOM) when it is opened

    return SyntheticSource(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           split_seed=cfg.split_seed, **synthetic_options(arg))
