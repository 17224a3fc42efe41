"""``--data SOURCE``: one argument names every kind of data source, and the data options around it.

SOURCE is ``synthetic`` (optionally ``synthetic:images=700,difficulty=0.6,seed=1,color=1,labels=multi``),
``mura:PATH``, ``folder:PATH``, ``npz:PATH``, ``csv:PATH``, ``medmnist:NAME[@SIZE]`` (each kind registered in
``data/sources/``), or a bare path whose kind is inferred.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError
from ..options import check_fields, config_dict, option
from .source import Source, SourceKind, source_kinds

TASKS = ("body_part", "abnormality")
COLORS = ("auto", "grey", "rgb")
UNCERTAIN = ("none", "ignore", "zeros", "ones")


def kinds() -> dict[str, SourceKind]:
    """Every registered source kind, by name, in the help's order (``data/sources/``)."""
    return {k.name: k for k in source_kinds()}


def source_help() -> str:
    """How a SOURCE is written: every registered kind, then a bare path."""
    return " | ".join([k.syntax for k in kinds().values()] + ["PATH"])


SOURCE_HELP = source_help()  # the kinds registered at import: the option's help is written once


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
        raise DataError(f"empty data source (use {source_help()})")
    head, sep, rest = spec.partition(":")
    known = kinds()
    if head in known and not known[head].paths:
        return head, rest
    if sep and head in known:
        if not rest:
            raise DataError(f"data source '{spec}' names no path")
        path = Path(rest).expanduser()
        if not path.exists():
            raise DataError(f"{head}: no such file or directory: {path}")
        return head, str(path.resolve())
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"no such file or directory: {path} (data sources: {source_help()})")
    return infer_kind(path), str(path.resolve())


def infer_kind(path: Path) -> str:
    """The kind of a bare path: a file by its ending, a folder by its layout (else the kind that takes folders)."""
    known = kinds().values()
    if path.is_file():
        kind = next((k.name for k in known if path.suffix.lower() in k.suffixes), None)
        if kind is None:
            words = " or ".join(k.file_word for k in known if k.file_word)
            raise DataError(f"{path} is a file but not {words} (data sources: {source_help()})")
        return kind
    return next((k.name for k in known if k.infer is not None and k.infer(path)), None) or \
        next(k.name for k in known if k.folders)


def open_source(cfg: DataConfig, validate: bool = True) -> Source:
    """Index the source that ``cfg`` names. Cheap: nothing is decoded yet."""
    kind, arg = parse_source(cfg.source)
    if cfg.task != "body_part" and not kinds()[kind].tasks:
        raise DataError(f"--task {cfg.task} applies to MURA only; {kind} data has one task")
    src = kinds()[kind].opener(arg, cfg)
    if validate:
        src.validate()
    return src
