"""Study files: TOML, data only (nothing in them is executed), validated key by key.

    name = "demo"                    # optional; default: the file's stem or the preset's name
    description = "..."              # optional
    seeds = [0, 1]
    teachers = ["resnet18"]          # optional: extra models trained normally (the models table)

    [data]            the data options (DataConfig):  source, task, image_size, ...
    [train]           the training options (TrainConfig): epochs, batch_size, lr, ...
    [teacher_train]   optional: the teachers' own training options; unset keys follow [train]
    [kd]              the distillation options (KDConfig): alpha, temperature, defect_acc, ...
    [shift]           optional: evaluate the finished runs under acquisition shift (ShiftConfig)

    [[experiments]]
    strategy = "normal"              # a strategy of the catalogue (kdengine study schema lists them)
    teachers = ["seresnet50", "seresnet101"]
    students = ["vgg11", "resnet18"]

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
from ..options import from_table, parse_assignment
from ..runspec import CONFIGS, MAX_SEED

PRESETS = ("demo", "thesis-mura", "thesis-mura-abnormality")
SECTIONS = ("data", "train", "teacher_train", "kd", "shift")
TOP = {"name", "seeds", "teachers", "experiments", "description", *SECTIONS}
EXPERIMENT = {"strategy", "teachers", "students", "name"}
MAX_NESTING = 8
MAX_BYTES = 1_000_000


@dataclass
class Experiment:
    strategy: str
    teachers: list[str]
    students: list[str]
    name: str = ""


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


def _fail(where: str, msg: str) -> UsageError:
    return UsageError(f"study {where}: {msg}")


def load_raw(file_or_preset: str) -> tuple[dict, str, str]:
    """(raw TOML dict, default name, source description)."""
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
    return raw, name, source


def _check_depth(node: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_NESTING:
        raise _fail(where, f"nested more than {MAX_NESTING} levels deep")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        _check_depth(child, where, depth + 1)


def load_study(file_or_preset: str, sets: list[str] | None = None, data: str | None = None) -> StudyConfig:
    raw, default_name, source = load_raw(file_or_preset)
    raw = copy.deepcopy(raw)
    overrides = [parse_assignment(s) for s in (sets or [])]
    if data:
        overrides.append((["data", "source"], data))
    for keys, value in overrides:
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {'.'.join(keys)}: '{k}' is not a table")
        node[keys[-1]] = value
    return validate(raw, default_name, source)


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
        raise _fail(where, f"unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(TOP))})")
    if isinstance(raw.get("data"), dict) and "spec" in raw["data"] and "source" not in raw["data"]:
        raw["data"]["source"] = raw["data"].pop("spec")  # kdstudy 0.1 called it spec
    data = from_table(CONFIGS["data"], raw.get("data", {}), f"study {where}")
    train = from_table(CONFIGS["train"], raw.get("train", {}), f"study {where}")
    kd = from_table(CONFIGS["kd"], raw.get("kd", {}), f"study {where}")
    teacher_train = None
    if "teacher_train" in raw:
        table = raw["teacher_train"]
        if not isinstance(table, dict):
            raise _fail(where, "'teacher_train' must be a table")
        teacher_train = from_table(CONFIGS["train"], table, f"study {where}", base=train)
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
            raise _fail(where, f"unknown key '{at}.{sorted(bad)[0]}' (known: {', '.join(sorted(EXPERIMENT))})")
        name = block.get("strategy")
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
        experiments.append(Experiment(name, block_teachers, students, str(block.get("name", ""))))
    name = str(raw.get("name") or default_name)
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise _fail(where, f"'name' may hold letters, digits, '-' and '_' only, got {name!r}")
    return StudyConfig(name=name, source=source, seeds=list(seeds), data=data.resolved(), train=train, kd=kd,
                       experiments=experiments, teacher_train=teacher_train, shift=shift, teachers=teachers,
                       description=str(raw.get("description", "")), raw=raw)
