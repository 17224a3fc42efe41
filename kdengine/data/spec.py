"""``--data SPEC``: one argument names every kind of source.

SPEC is ``synthetic`` (optionally ``synthetic:images=700,difficulty=0.6,seed=1``),
``mura:PATH``, ``folder:PATH``, ``npz:PATH``, or a bare path whose kind is inferred.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .source import Source

KINDS = ("synthetic", "mura", "folder", "npz")


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides which images land in which split (part of a run's identity)."""

    spec: str = "synthetic"
    task: str = "body_part"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    cap_train: int | None = None
    cap_test: int | None = None
    skip_bad: bool = False  # skip unreadable images (counted) instead of failing

    def resolved(self) -> "DataConfig":
        """The same config with the spec's path made absolute and its kind explicit."""
        kind, arg = parse_spec(self.spec)
        spec = kind if kind == "synthetic" and not arg else f"{kind}:{arg}"
        return DataConfig(**{**asdict(self), "spec": spec})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a SPEC into (kind, argument); paths come back absolute. Raises DataError."""
    spec = (spec or "").strip()
    if not spec:
        raise DataError("empty data spec (use synthetic, mura:PATH, folder:PATH, npz:PATH or a path)")
    head, sep, rest = spec.partition(":")
    if head == "synthetic":
        return "synthetic", rest
    if sep and head in KINDS:
        if not rest:
            raise DataError(f"data spec '{spec}' names no path")
        path = Path(rest).expanduser()
        if not path.exists():
            raise DataError(f"{head}: no such file or directory: {path}")
        return head, str(path.resolve())
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"no such file or directory: {path} (data specs: synthetic, mura:PATH, folder:PATH, npz:PATH)")
    return infer_kind(path), str(path.resolve())


def infer_kind(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz"
        raise DataError(f"{path} is a file but not an .npz (give a folder, an .npz, or synthetic)")
    if (path / "MURA-v1.1").is_dir() or ((path / "train").is_dir() and (path / "valid").is_dir()
                                         and any(p.name.startswith("XR_") for p in (path / "train").iterdir())):
        return "mura"
    return "folder"


def _synthetic_options(arg: str) -> dict[str, Any]:
    from .synthetic import SyntheticConfig

    opts: dict[str, Any] = {}
    types = {"images": int, "difficulty": float, "seed": int}
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in types:
            raise DataError(f"synthetic: bad option '{part}' (options: images=N, difficulty=0..1, seed=N)")
        try:
            opts[key.strip()] = types[key.strip()](value)
        except ValueError:
            raise DataError(f"synthetic: {key} must be a number, got '{value}'") from None
    try:
        return {"cfg": SyntheticConfig(**opts)}
    except ValueError as exc:
        raise DataError(str(exc)) from None


def open_source(cfg: DataConfig, validate: bool = True) -> Source:
    """Index the source that ``cfg`` names. Cheap: nothing is decoded yet."""
    kind, arg = parse_spec(cfg.spec)
    if cfg.task != "body_part" and kind != "mura":
        raise DataError(f"--task {cfg.task} applies to MURA only; {kind} data has one task")
    if not 0 < cfg.val_fraction < 0.9:
        raise DataError(f"val fraction must lie in (0, 0.9), got {cfg.val_fraction}")
    if kind == "synthetic":
        from .arrays import SyntheticSource

        src: Source = SyntheticSource(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                      split_seed=cfg.split_seed, **_synthetic_options(arg))
    elif kind == "npz":
        from .arrays import NpzSource

        src = NpzSource(Path(arg), val_fraction=cfg.val_fraction, split_seed=cfg.split_seed)
    elif kind == "folder":
        from .files import FolderSource

        src = FolderSource(Path(arg), val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           split_seed=cfg.split_seed)
    else:
        from .files import MuraSource

        src = MuraSource(Path(arg), task=cfg.task, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                         cap_train=cfg.cap_train, cap_test=cfg.cap_test)
    if validate:
        src.validate()
    return src
