"""``synthetic`` (``synthetic:images=700,difficulty=0.6,seed=1,site=2``): generated radiograph-like images of seven
classes, for tests, demos and CPU smoke runs; ``color=1`` stains them (a colour source), ``labels=multi`` gives each
five findings (``uncertain=0.1``: a share of them uncertain), ``labels=binary`` asks one yes/no question."""
from __future__ import annotations

from typing import Any

from ...errors import DataError
from ..source import register_source

OPTIONS = {"images": int, "difficulty": float, "seed": int, "site": int, "color": int, "labels": str,
           "uncertain": float}


def synthetic_options(arg: str) -> dict[str, Any]:
    """The generator's settings and the acquisition site from ``images=N,difficulty=D,seed=S,site=K``."""
    from ..corruptions import SITES  # cv2 (100 ms): the launch form parses sources as they are typed
    from ..synthetic import SyntheticConfig  # cv2, as above

    opts: dict[str, Any] = {}
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in OPTIONS:
            raise DataError(f"synthetic: bad option '{part}' (options: images=N, difficulty=0..1, seed=N, site=0..3, "
                            "color=0|1, labels=classes|multi|binary, uncertain=0..0.9)")
        try:
            opts[key.strip()] = OPTIONS[key.strip()](value.strip())
        except ValueError:
            raise DataError(f"synthetic: {key} must be a number, got '{value}'") from None
    site, color = opts.pop("site", 0), opts.pop("color", 0)
    labels, uncertain = opts.pop("labels", "classes"), opts.pop("uncertain", 0.0)
    if site != 0 and site not in SITES:
        raise DataError(f"synthetic: site must be 0 (the reference) or one of {', '.join(map(str, SITES))}, got {site}")
    if color not in (0, 1):
        raise DataError(f"synthetic: color must be 0 or 1, got {color}")
    if labels not in ("classes", "multi", "binary"):
        raise DataError(f"synthetic: labels must be classes, multi or binary, got '{labels}'")
    if not 0.0 <= uncertain <= 0.9 or (uncertain and labels != "multi"):
        raise DataError("synthetic: uncertain is a share in [0, 0.9] of the multi-label variant's labels "
                        f"(labels=multi), got {uncertain}")
    try:
        return {"cfg": SyntheticConfig(**opts), "site": site, "color": bool(color), "labels": labels,
                "uncertain": uncertain}
    except ValueError as exc:
        raise DataError(str(exc)) from None


@register_source("synthetic", "synthetic", paths=False, rank=0)
def open_synthetic(arg: str, cfg):
    from ..arrays import SyntheticSource  # each kind loads its readers (images, DICOM) when it is opened

    opts = synthetic_options(arg)
    opts["color"] = opts["color"] if cfg.color == "auto" else cfg.color == "rgb"
    return SyntheticSource(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           split_seed=cfg.split_seed, policy=cfg.uncertain, **opts)
