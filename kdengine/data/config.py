"""``--data SOURCE``: one argument names every kind of data source, and the data options around it.

SOURCE is ``synthetic`` (optionally ``synthetic:images=700,difficulty=0.6,seed=1,color=1,labels=multi``),
``mura:PATH``, ``folder:PATH``, ``npz:PATH``, ``csv:PATH``, ``medmnist:NAME[@SIZE]`` (MedMNIST+'s official files,
read from $MEDMNIST_ROOT), or a bare path whose kind is inferred.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError
from ..options import check_fields, config_dict, option
from .source import Source

KINDS = ("synthetic", "mura", "folder", "npz", "csv", "medmnist")
TASKS = ("body_part", "abnormality")
COLORS = ("auto", "grey", "rgb")
UNCERTAIN = ("none", "ignore", "zeros", "ones")
SOURCE_HELP = "synthetic | mura:PATH | folder:PATH | npz:PATH | csv:PATH | medmnist:NAME[@SIZE] | PATH"
NAMED = ("synthetic", "medmnist")  # kinds whose argument is no path


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
    cap_train: int | None = option(None, "at most N train+val images per class (multi-label: N x findings in all; "
                                   "mura, npz, medmnist)", low=1, advanced=True)
    cap_test: int | None = option(None, "at most N test images per class (mura, npz, medmnist)", low=1, advanced=True)
    skip_bad: bool = option(False, "skip unreadable images (counted) instead of stopping", advanced=True)
    color: str = option("auto", "auto: colour where the source has it (npz, medmnist, synthetic:color=1), grey for "
                        "radiographs (mura, DICOM, folders, manifests); rgb: keep colour (dermoscopy, pathology); "
                        "grey: make it grey", choices=COLORS, since=3, advanced=True, label="Colour")
    uncertain: str = option("none", "multi-label: what an uncertain (-1) or blank label means: ignore (left out of "
                            "the loss and the metrics), zeros or ones (U-Ignore, U-Zeros, U-Ones of Irvin et al. "
                            "2019); none: refuse them", choices=UNCERTAIN, since=3, advanced=True)

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
    if head in NAMED:
        if head == "medmnist" and not rest:
            raise DataError("medmnist: name a dataset, e.g. medmnist:chestmnist@64")
        return head, rest
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
    types = {"images": int, "difficulty": float, "seed": int, "site": int, "color": int, "labels": str,
             "uncertain": float}
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in types:
            raise DataError(f"synthetic: bad option '{part}' (options: images=N, difficulty=0..1, seed=N, site=0..3, "
                            "color=0|1, labels=classes|multi|binary, uncertain=0..0.9)")
        try:
            opts[key.strip()] = types[key.strip()](value.strip())
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


def _synthetic(arg: str, cfg: DataConfig) -> Source:
    from .arrays import SyntheticSource  # each source kind loads its own readers (DICOM, images) when used

    opts = _synthetic_options(arg)
    opts["color"] = opts["color"] if cfg.color == "auto" else cfg.color == "rgb"
    return SyntheticSource(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           split_seed=cfg.split_seed, policy=cfg.uncertain, **opts)


def _npz(arg: str, cfg: DataConfig) -> Source:
    from .arrays import NpzSource  # as above: a kind's readers load when it is used

    return NpzSource(Path(arg), val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, color=cfg.color,
                     uncertain=cfg.uncertain, cap_train=cfg.cap_train, cap_test=cfg.cap_test)


def _medmnist(arg: str, cfg: DataConfig) -> Source:
    from .medmnist import MedmnistSource  # as above: a kind's readers load when it is used

    return MedmnistSource(arg, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, color=cfg.color,
                          uncertain=cfg.uncertain, cap_train=cfg.cap_train, cap_test=cfg.cap_test,
                          image_size=cfg.image_size)


def _csv(arg: str, cfg: DataConfig) -> Source:
    from .manifest import CsvSource  # as above: a kind's readers load when it is used

    return CsvSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                     split_seed=cfg.split_seed, uncertain=cfg.uncertain, colour=cfg.color == "rgb")


def _folder(arg: str, cfg: DataConfig) -> Source:
    from .files import FolderSource  # as above: a kind's readers load when it is used

    return FolderSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                        split_seed=cfg.split_seed, colour=cfg.color == "rgb")


def _mura(arg: str, cfg: DataConfig) -> Source:
    from .files import MuraSource  # as above: a kind's readers load when it is used

    if cfg.color == "rgb":
        raise DataError("mura: radiographs are grey (some are saved as RGB); data.color rgb does not apply")
    return MuraSource(Path(arg), task=cfg.task, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                      cap_train=cfg.cap_train, cap_test=cfg.cap_test)


SOURCES = {"synthetic": _synthetic, "mura": _mura, "folder": _folder, "npz": _npz, "csv": _csv,
           "medmnist": _medmnist}
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
