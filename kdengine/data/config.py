"""``--data SOURCE``: one argument names every kind of data source, and the data options around it.

SOURCE is ``synthetic`` (optionally ``synthetic:images=700,difficulty=0.6,seed=1``),
``mura:PATH``, ``folder:PATH``, ``npz:PATH``, or a bare path whose kind is inferred.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError
from ..options import check_fields, config_dict, option
from .source import Source

KINDS = ("synthetic", "mura", "folder", "npz", "csv")
TASKS = ("body_part", "abnormality")
SOURCE_HELP = "synthetic | mura:PATH | folder:PATH | npz:PATH | csv:PATH | PATH"


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides which images, at which size, land in which split (part of a run's identity)."""

    SECTION: ClassVar[str] = "data"

    source: str = option("synthetic", f"the data: {SOURCE_HELP}", flag="--data", label="Data",
                         metavar="SOURCE")
    task: str = option("body_part", "MURA task: the 7 body parts, or normal/abnormal", choices=TASKS)
    image_size: int = option(64, "side of the (square) images the models see, in pixels", low=8, high=4096,
                             label="Image size")
    val_fraction: float = option(0.15, "share of train carved out as val, by patient", low=0.0, low_open=True,
                                 high=0.9, advanced=True)
    test_fraction: float = option(0.15, "share held out as test, by patient (sources without a test split)",
                                  low=0.0, low_open=True, high=0.9, advanced=True)
    split_seed: int = option(0, "seed of the train/val/test split", low=0, high=2**32 - 1, advanced=True)
    cap_train: int | None = option(None, "at most N train+val images per class", low=1, advanced=True)
    cap_test: int | None = option(None, "at most N test images per class", low=1, advanced=True)
    skip_bad: bool = option(False, "skip unreadable images (counted) instead of stopping", advanced=True)

    def __post_init__(self) -> None:
        check_fields(self)

    def resolved(self) -> "DataConfig":
        """The same config with the source's path made absolute and its kind explicit."""
        kind, arg = parse_source(self.source)
        source = kind if kind == "synthetic" and not arg else f"{kind}:{arg}"
        return replace(self, source=source)

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)


def parse_source(spec: str) -> tuple[str, str]:
    """Split a SOURCE into (kind, argument); paths come back absolute. Raises DataError."""
    spec = (spec or "").strip()
    if not spec:
        raise DataError(f"empty data source (use {SOURCE_HELP})")
    head, sep, rest = spec.partition(":")
    if head == "synthetic":
        return "synthetic", rest
    if sep and head in KINDS:
        if not rest:
            raise DataError(f"data source '{spec}' names no path")
        path = Path(rest).expanduser()
        if not path.exists():
            raise DataError(f"{head}: no such file or directory: {path}")
        return head, str(path.resolve())
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"no such file or directory: {path} (data sources: {SOURCE_HELP})")
    return infer_kind(path), str(path.resolve())


def infer_kind(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz"
        if path.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"{path} is a file but not an .npz or a .csv manifest (give a folder, an .npz, a .csv, "
                        "or synthetic)")
    if (path / "MURA-v1.1").is_dir() or ((path / "train").is_dir() and (path / "valid").is_dir()
                                         and any(p.name.startswith("XR_") for p in (path / "train").iterdir())):
        return "mura"
    return "folder"


def _synthetic_options(arg: str) -> dict[str, Any]:
    from .corruptions import SITES  # cv2 (100 ms): the launch form parses sources as they are typed
    from .synthetic import SyntheticConfig  # cv2, as above

    opts: dict[str, Any] = {}
    types = {"images": int, "difficulty": float, "seed": int, "site": int}
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in types:
            raise DataError(f"synthetic: bad option '{part}' (options: images=N, difficulty=0..1, seed=N, site=0..3)")
        try:
            opts[key.strip()] = types[key.strip()](value)
        except ValueError:
            raise DataError(f"synthetic: {key} must be a number, got '{value}'") from None
    site = opts.pop("site", 0)

    if site != 0 and site not in SITES:
        raise DataError(f"synthetic: site must be 0 (the reference) or one of {', '.join(map(str, SITES))}, got {site}")
    try:
        return {"cfg": SyntheticConfig(**opts), "site": site}
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _synthetic(arg: str, cfg: DataConfig) -> Source:
    from .arrays import SyntheticSource  # each source kind loads its own readers (DICOM, images) when used

    return SyntheticSource(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           split_seed=cfg.split_seed, **_synthetic_options(arg))


def _npz(arg: str, cfg: DataConfig) -> Source:
    from .arrays import NpzSource  # as above: a kind's readers load when it is used

    return NpzSource(Path(arg), val_fraction=cfg.val_fraction, split_seed=cfg.split_seed)


def _csv(arg: str, cfg: DataConfig) -> Source:
    from .manifest import CsvSource  # as above: a kind's readers load when it is used

    return CsvSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                     split_seed=cfg.split_seed)


def _folder(arg: str, cfg: DataConfig) -> Source:
    from .files import FolderSource  # as above: a kind's readers load when it is used

    return FolderSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                        split_seed=cfg.split_seed)


def _mura(arg: str, cfg: DataConfig) -> Source:
    from .files import MuraSource  # as above: a kind's readers load when it is used

    return MuraSource(Path(arg), task=cfg.task, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                      cap_train=cfg.cap_train, cap_test=cfg.cap_test)


SOURCES = {"synthetic": _synthetic, "mura": _mura, "folder": _folder, "npz": _npz, "csv": _csv}
assert tuple(SOURCES) == KINDS


def open_source(cfg: DataConfig, validate: bool = True) -> Source:
    """Index the source that ``cfg`` names. Cheap: nothing is decoded yet."""
    kind, arg = parse_source(cfg.source)
    if cfg.task != "body_part" and kind != "mura":
        raise DataError(f"--task {cfg.task} applies to MURA only; {kind} data has one task")
    src = SOURCES[kind](arg, cfg)
    if validate:
        src.validate()
    return src
