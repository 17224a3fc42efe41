"""Study files: TOML, data only (nothing in them is executed), validated key by key.

    name = "demo"                    # optional; default: the file's stem or the preset's name
    extends = "thesis-mura"          # optional: start from a preset or a study file; this file's keys win
    description = "..."              # optional
    seeds = [0, 1]
    teachers = ["resnet18"]          # optional: extra models trained normally (the models table)
    primary = "normal"               # optional: the study's primary comparison (a strategy's gains, or a table's
                                     # family): corrected alone, every other family's marks exploratory

    [data]            the data options (DataConfig):  source, task, image_size, ...
    [train]           the training options (TrainConfig): epochs, batch_size, lr, ...
    [teacher_train]   optional: the teachers' own training options; unset keys follow [train]
    [kd]              the distillation options (KDConfig): alpha, temperature, defect_acc, ...
    [shift]           optional: evaluate the finished runs under acquisition shift (ShiftConfig)

    [[experiments]]
    strategy = "normal"              # a strategy of the catalogue (kdengine study schema lists them)
    teachers = ["seresnet50", "seresnet101"]
    students = ["vgg11", "resnet18"]
    kd.alpha = 0.5                   # optional: this block's own [train], [teacher_train], [kd] settings
                                     # (and data.image_size); unset keys follow the top-level sections

Sweeps: a list where a setting takes one value is an axis, at the top (every block) or inside one block:

    kd.temperature = [1, 2, 4, 8]    # in [kd]: the study runs each value
    sweep = "zip"                    # optional, at the top or in a block: pair several axes value by value
                                     # (default "product": every combination)

Any [train], [teacher_train] or [kd] setting, and data.image_size, data.source (a comparison across datasets:
``source = ["medmnist:dermamnist", "medmnist:chestmnist"]``), data.color and data.uncertain, may be an axis; ``--set
kd.temperature=[1,2,4,8]`` does the same from the command line. Nothing is trained twice: a baseline does
not depend on [kd], so one baseline serves every temperature; a defective teacher depends on its threshold,
so each threshold trains its own.

The sections are the run spec's own configs, so a study file and a run's spec.json have one layout,
and a new option is accepted here the moment it is declared. Every error names the key at fault,
in one line. ``kdengine study schema`` prints every key with its type, default and help.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from .. import strategy_catalog as catalog
from ..errors import UsageError
from ..options import did_you_mean, from_table, parse_assignment
from ..runspec import CONFIGS, MAX_SEED
from .axes import SWEEPABLE_DATA, SWEPT_SECTIONS, Axis, points, split_axes

PRESETS = ("demo", "thesis-mura", "thesis-mura-abnormality", "thesis-mura-sweep", "methods-mura", "medmnist-kd")
SECTIONS = ("data", "train", "teacher_train", "kd", "shift")
TOP = {"name", "seeds", "teachers", "experiments", "description", "sweep", "extends", "primary", *SECTIONS}
EXPERIMENT = {"strategy", "teachers", "students", "name", "sweep", *SWEPT_SECTIONS}
MAX_NESTING = 8
MAX_EXTENDS = 4
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Settings:
    """One point of a block's sweep (or its only settings): the configs its runs are built from."""
    point: dict  # {axis key: value}; empty without axes
    data: Any  # DataConfig
    train: Any  # TrainConfig
    kd: Any  # KDConfig
    teacher_train: Any = None  # TrainConfig, or None: the teachers train like the students


@dataclass
class Experiment:
    strategy: str
    teachers: list[str]
    students: list[str]
    name: str = ""
    settings: list[Settings] = field(default_factory=list)
    axes: list[Axis] = field(default_factory=list)


@dataclass
class StudyConfig:
    name: str
    source: str
    seeds: list[int]
    data: Any  # DataConfig
    train: Any  # TrainConfig
    kd: Any  # KDConfig
    experiments: list[Experiment]
    teacher_train: Any = None  # TrainConfig, or None: the teachers train like the students
    shift: Any = None  # ShiftConfig, or None: no evaluation under shift after training
    teachers: list[str] = field(default_factory=list)
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    axes: list[Axis] = field(default_factory=list)  # every block's axes, in order (one per key)
    primary: str = ""  # the primary comparison's family ("" none declared; reports.families reads the raw key)
    top_settings: list[Settings] = field(default_factory=list)  # the top-level points: the extra teachers'

    @property
    def swept(self) -> bool:
        return bool(self.axes)


def _fail(where: str, msg: str) -> UsageError:
    return UsageError(f"study {where}: {msg}")


def load_raw(file_or_preset: str, depth: int = 0) -> tuple[dict, str, str]:
    """(raw TOML dict, default name, source description); a study that ``extends`` another comes merged."""
    path = Path(file_or_preset).expanduser()
    if path.is_file():
        try:
            if path.stat().st_size > MAX_BYTES:
                raise UsageError(f"study {path}: the file is over {MAX_BYTES // 1000} kB; a study file is a few lines")
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"study {path}: not UTF-8 text (save the file as UTF-8)") from None
        except OSError as exc:
            raise UsageError(f"study {path}: cannot read it ({exc.strerror})") from None
        name, source = path.stem, str(path.resolve())
    elif path.is_dir():
        raise UsageError(f"study {path} is a folder; give a study TOML file or a preset ({', '.join(PRESETS)})")
    elif file_or_preset in PRESETS:
        text = resources.files("kdengine.presets").joinpath(f"{file_or_preset}.toml").read_text(encoding="utf-8")
        name, source = file_or_preset, f"preset:{file_or_preset}"
    else:
        raise UsageError(f"no study file or preset '{file_or_preset}' (presets: {', '.join(PRESETS)})")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"study {source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"study {source}: nested too deeply") from None
    _check_depth(raw, source)
    if "extends" in raw:
        raw = _extended(raw, path.parent if path.is_file() else None, source, depth)
    return raw, name, source


def _extended(raw: dict, folder: Path | None, source: str, depth: int) -> dict:
    """``extends = "thesis-mura"`` (a preset, or a study file beside this one): the base study's keys, with this
    file's over them (a table key by key; a list, a value or [[experiments]] whole). Name and description are
    this file's own."""
    base_name = raw.pop("extends")
    if not isinstance(base_name, str) or not base_name:
        raise UsageError(f"study {source}: 'extends' must name a preset or a study file")
    if depth >= MAX_EXTENDS:
        raise UsageError(f"study {source}: 'extends' goes more than {MAX_EXTENDS} studies deep (a loop?)")
    beside = folder / base_name if folder is not None and not Path(base_name).is_absolute() else Path(base_name)
    base, _, _ = load_raw(str(beside) if beside.is_file() else base_name, depth + 1)
    for key in ("name", "description"):
        base.pop(key, None)
    return _merge(base, raw)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _check_depth(node: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_NESTING:
        raise _fail(where, f"nested more than {MAX_NESTING} levels deep")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        _check_depth(child, where, depth + 1)


def load_study(file_or_preset: str, sets: list[str] | None = None, data: str | None = None) -> StudyConfig:
    raw, default_name, source = load_raw(file_or_preset)
    return with_overrides(raw, default_name, source, sets, data)


def with_overrides(raw: dict, default_name: str, source: str, sets: list[str] | None = None,
                   data: str | None = None) -> StudyConfig:
    """A study's keys as written (a file's, or a request the store recorded), ``--set`` and ``--data`` over them. An
    error that an override brings (a typo in ``--set kd.temprature=3``) names the override, not the study file."""
    overrides = [(s, *parse_assignment(s)) for s in (sets or [])]
    if data:
        overrides.append((f"--data {data}", ["data", "source"], data))
    try:
        return validate(_overridden(raw, overrides), default_name, source)
    except UsageError as exc:
        for i, (item, _, _) in enumerate(overrides):  # the first override whose addition brings the error
            try:
                validate(_overridden(raw, overrides[:i + 1]), default_name, source)
            except UsageError as err:
                if str(err) == str(exc):
                    said = item if item.startswith("--data") else f"--set {item}"
                    raise UsageError(f"{said}: {str(exc).removeprefix(f'study {source}: ')}") from None
        raise


def _overridden(raw: dict, overrides: list[tuple[str, list[str], Any]]) -> dict:
    raw = copy.deepcopy(raw)
    for _, keys, value in overrides:
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {'.'.join(keys)}: '{k}' is not a table")
        node[keys[-1]] = value
    return raw


def _models(where: str, key: str, value: Any, allow_empty: bool = True) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise _fail(where, f"'{key}' must be a list of model names")
    if not allow_empty and not value:
        raise _fail(where, f"'{key}' is empty")
    return list(value)


def validate(raw: dict, default_name: str, source: str) -> StudyConfig:
    where = source
    unknown = set(raw) - TOP
    if unknown:
        key = sorted(unknown)[0]
        raise _fail(where, f"unknown key '{key}' (known: {', '.join(sorted(TOP))}){did_you_mean(key, TOP)}")
    if isinstance(raw.get("data"), dict) and "spec" in raw["data"] and "source" not in raw["data"]:
        raw["data"]["source"] = raw["data"].pop("spec")  # kdstudy 0.1 called it spec
    for section in SWEPT_SECTIONS:
        if section in raw and not isinstance(raw[section], dict):
            raise _fail(where, f"'{section}' must be a table")
        if "sweep" in raw.get(section, {}):  # TOML put it under the table above it
            raise _fail(where, f"'{section}.sweep': 'sweep' goes at the top of the file, before the first [table] "
                               "(or inside an [[experiments]] block)")
    top, top_axes = split_axes({s: raw[s] for s in SWEPT_SECTIONS if s in raw}, where)
    mode = raw.get("sweep", "product")
    top_settings = [_settings(top, point, "teacher_train" in raw, where) for point in points(top_axes, mode, where)]
    # the study's own configs hold its scalars (an axis's key keeps its default there)
    base = _settings(top, {}, "teacher_train" in raw, where)
    data, train, kd, teacher_train = base.data, base.train, base.kd, base.teacher_train
    shift = None
    if "shift" in raw:
        from ..data.corruptions import ShiftConfig  # cv2: only a study with [shift]

        shift = from_table(ShiftConfig, raw["shift"], f"study {where}")
    if not data.source:
        raise _fail(where, "no data: pass --data SOURCE (e.g. --data mura:/path/to/MURA-v1.1)")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail(where, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise _fail(where, f"'seeds' must lie in [0, {MAX_SEED}], got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise _fail(where, f"'seeds' repeats a seed: {seeds}")
    teachers = _models(where, "teachers", raw.get("teachers", []))
    blocks = raw.get("experiments", [])
    if not isinstance(blocks, list) or not blocks:
        raise _fail(where, "needs at least one [[experiments]] block")
    experiments = []
    for i, block in enumerate(blocks, start=1):
        at = f"experiments[{i}]"
        if not isinstance(block, dict):
            raise _fail(where, f"'{at}' must be a table")
        bad = set(block) - EXPERIMENT
        if bad:
            key = sorted(bad)[0]
            raise _fail(where, f"unknown key '{at}.{key}' (known: {', '.join(sorted(EXPERIMENT))})"
                               + did_you_mean(key, EXPERIMENT, f"{at}."))
        name = block.get("strategy")
        if isinstance(name, (list, dict)):
            kind = "list" if isinstance(name, list) else "table"
            raise _fail(where, f"'{at}.strategy' takes one strategy name, got a {kind}: write one [[experiments]] "
                               "block per strategy (lists are axes only in [train], [teacher_train], [kd] and "
                               "data.image_size)")
        if name not in catalog.CATALOGUE:
            raise _fail(where, f"'{at}.strategy' must be one of {', '.join(catalog.names())}, got {name!r}")
        strat = catalog.CATALOGUE[name]
        students = _models(where, f"{at}.students", block.get("students", []), allow_empty=False)
        block_teachers = _models(where, f"{at}.teachers", block.get("teachers", []))
        if strat.takes_teachers and not block_teachers:
            raise _fail(where, f"'{at}': strategy {name} needs teachers")
        if not strat.takes_teachers and block_teachers:
            raise _fail(where, f"'{at}': strategy {name} takes no teachers")
        if len(block_teachers) < strat.min_teachers:
            raise _fail(where, f"'{at}': strategy {name} needs at least {strat.min_teachers} teachers")
        settings, block_axes = _block_settings(raw, top, top_axes, block, at, where)
        experiments.append(Experiment(name, block_teachers, students, str(block.get("name", "")), settings,
                                      block_axes))
    primary = _primary(raw.get("primary"), [e.strategy for e in experiments], where)
    name = str(raw.get("name") or default_name)
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise _fail(where, f"'name' may hold letters, digits, '-' and '_' only, got {name!r}")
    return StudyConfig(name=name, source=source, seeds=list(seeds), data=data.resolved(), train=train, kd=kd,
                       experiments=experiments, teacher_train=teacher_train, shift=shift, teachers=teachers,
                       description=str(raw.get("description", "")), raw=raw,
                       axes=_union_axes([top_axes, *(e.axes for e in experiments)]), top_settings=top_settings,
                       primary=primary)


def _primary(value: Any, strategies: list[str], where: str) -> str:
    """``primary``: a strategy of the study's blocks ("normal": its students' gains), or a family by its table's
    name (students_normal, robustness_normal, sweep_kd.temperature, sweep_best, attention)."""
    if value is None:
        return ""
    kd = [s for s in dict.fromkeys(strategies) if catalog.CATALOGUE[s].distills]
    fixed = {"sweep_best", "attention"}
    ok = isinstance(value, str) and (value in kd or value in fixed or value.startswith("sweep_")
                                     or value.removeprefix("students_").removeprefix("robustness_") in kd)
    if not ok:
        raise _fail(where, f"'primary' must name a strategy of the study ({', '.join(kd) or 'none'}) or a family "
                           f"(students_<strategy>, robustness_<strategy>, sweep_<axis>, sweep_best, attention), got "
                           f"{value!r}")
    return value


def _settings(tables: dict[str, dict], point: dict[str, Any], teacher_train: bool, where: str) -> Settings:
    """The configs of one point: the sections' scalars with the point's values put in (each value checked as a
    scalar setting is, the error naming its key)."""
    tables = {k: dict(v) for k, v in tables.items()}
    for key, value in point.items():
        section, _, name = key.partition(".")
        tables.setdefault(section, {})[name] = value
    at = f"study {where}"
    train = from_table(CONFIGS["train"], tables.get("train", {}), at)
    data = from_table(CONFIGS["data"], tables.get("data", {}), at)
    return Settings(point=dict(point), data=data.resolved() if data.source else data,  # no source: said below
                    train=train, kd=from_table(CONFIGS["kd"], tables.get("kd", {}), at),
                    teacher_train=from_table(CONFIGS["train"], tables.get("teacher_train", {}), at, base=train)
                    if teacher_train else None)


def _block_settings(raw: dict, top: dict[str, dict], top_axes: list[Axis], block: dict, at: str,
                    where: str) -> tuple[list[Settings], list[Axis]]:
    """A block's points: the top-level sections and axes, with the block's own settings and axes over them (a
    block's scalar replaces a top axis of its key, a block's axis a top scalar or axis)."""
    own = {s: block[s] for s in SWEPT_SECTIONS if s in block}
    for section, table in own.items():
        if not isinstance(table, dict):
            raise _fail(where, f"'{at}.{section}' must be a table")
    bad = [k for k in own.get("data", {}) if k not in SWEEPABLE_DATA]
    if bad:
        raise _fail(where, f"'{at}.data.{bad[0]}': a block may set only data.{', '.join(SWEEPABLE_DATA)} (the splits "
                           "and caps are the study's)")
    scalars, block_axes = split_axes(own, where)
    mine = {a.key for a in block_axes} | {f"{s}.{k}" for s, t in scalars.items() for k in t}
    axes = [a for a in top_axes if a.key not in mine] + block_axes
    merged = {s: {**top.get(s, {}), **scalars.get(s, {})} for s in SWEPT_SECTIONS}
    for a in block_axes:
        merged[a.section].pop(a.name, None)
    mode = block.get("sweep", raw.get("sweep", "product"))
    has_tt = "teacher_train" in raw or "teacher_train" in own
    return [_settings(merged, point, has_tt, where) for point in points(axes, mode, f"{where} {at}")], axes


def _union_axes(groups) -> list[Axis]:
    """One axis per key, its values in the order first met (two blocks may sweep one key over other values)."""
    out: dict[str, list] = {}
    for axes in groups:
        for a in axes:
            values = out.setdefault(a.key, [])
            values += [v for v in a.values if v not in values]
    return [Axis(k, tuple(v)) for k, v in out.items()]
