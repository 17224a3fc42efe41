"""Study files: TOML, data only (nothing in them is executed), validated key by key.

    name = "demo"                    # optional; default: the file's stem or the preset's name
    seeds = [0, 1]
    teachers = ["resnet18"]          # optional: extra models trained normally (the teachers table)

    [data]   spec, task, image_size, val_fraction, split_seed, cap_train, cap_test, skip_bad
    [train]  epochs, batch_size, lr, optimizer, weight_decay, momentum, schedule, step_size, gamma,
             grad_clip, patience, pretrained, pretrained_from
    [kd]     alpha, temperature, reduction, defect_acc, defect_check_every, tf_a, tf_temperature

    [[experiments]]
    strategy = "normal"              # normal | reverse | defective | tf-self | tf-reg | ensemble | baseline
    teachers = ["seresnet50", "seresnet101"]
    students = ["vgg11", "resnet18"]

Every error names the key at fault in one line.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..runspec import KL_REDUCTIONS, OPTIMIZERS, SCHEDULES, STRATEGIES

PRESETS = ("demo", "thesis-mura", "thesis-mura-abnormality")

# key -> (type, default); a type tuple allows several
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "data": {"spec": (str, "synthetic"), "task": (str, "body_part"), "image_size": (int, 64),
             "val_fraction": (float, 0.15), "split_seed": (int, 0), "cap_train": (int, 0), "cap_test": (int, 0),
             "skip_bad": (bool, False)},
    "train": {"epochs": (int, 10), "batch_size": (int, 32), "lr": (float, 1e-3), "optimizer": (str, "adam"),
              "weight_decay": (float, 0.0), "momentum": (float, 0.9), "schedule": (str, "constant"),
              "step_size": (int, 10), "gamma": (float, 0.1), "grad_clip": (float, 0.0), "patience": (int, 0),
              "pretrained": (bool, False), "pretrained_from": (str, "")},
    "kd": {"alpha": (float, 0.9), "temperature": (float, 4.0), "reduction": (str, "batchmean"),
           "defect_acc": (float, 0.5), "defect_check_every": (int, 0), "tf_a": (float, 0.9),
           "tf_temperature": (float, 1.0)},
}
TOP = {"name", "seeds", "teachers", "experiments", "description", *SCHEMA}
EXPERIMENT = {"strategy", "teachers", "students", "name"}
CHOICES = {"train.optimizer": OPTIMIZERS, "train.schedule": SCHEDULES, "kd.reduction": KL_REDUCTIONS,
           "data.task": ("body_part", "abnormality")}


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
    data: dict[str, Any]
    train: dict[str, Any]
    kd: dict[str, Any]
    experiments: list[Experiment]
    teachers: list[str] = field(default_factory=list)
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _fail(where: str, msg: str) -> UsageError:
    return UsageError(f"study {where}: {msg}")


def _typed(where: str, key: str, value: Any, kind) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise _fail(where, f"'{key}' must be {kind.__name__}, got {value!r}")
    return value


def parse_set(item: str) -> tuple[list[str], Any]:
    """``key.sub=value``: the value is read as TOML (numbers, booleans, lists), else as a string."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise UsageError(f"--set needs key=value, got '{item}'")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


def load_raw(file_or_preset: str) -> tuple[dict, str, str]:
    """(raw TOML dict, default name, source description)."""
    path = Path(file_or_preset).expanduser()
    if path.is_file():
        text, name, source = path.read_text(encoding="utf-8"), path.stem, str(path.resolve())
    elif file_or_preset in PRESETS:
        text = resources.files("kdengine.presets").joinpath(f"{file_or_preset}.toml").read_text(encoding="utf-8")
        name, source = file_or_preset, f"preset:{file_or_preset}"
    else:
        raise UsageError(f"no study file or preset '{file_or_preset}' (presets: {', '.join(PRESETS)})")
    try:
        return tomllib.loads(text), name, source
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"study {source}: not valid TOML: {exc}") from None


def load_study(file_or_preset: str, sets: list[str] | None = None, data: str | None = None) -> StudyConfig:
    raw, default_name, source = load_raw(file_or_preset)
    raw = copy.deepcopy(raw)
    overrides = [parse_set(s) for s in (sets or [])]
    if data:
        overrides.append((["data", "spec"], data))
    for keys, value in overrides:
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {'.'.join(keys)}: '{k}' is not a table")
        node[keys[-1]] = value
    return validate(raw, default_name, source)


def validate(raw: dict, default_name: str, source: str) -> StudyConfig:
    where = source
    unknown = set(raw) - TOP
    if unknown:
        raise _fail(where, f"unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(TOP))})")
    sections = {}
    for section, fields_ in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise _fail(where, f"'{section}' must be a table")
        bad = set(given) - set(fields_)
        if bad:
            raise _fail(where, f"unknown key '{section}.{sorted(bad)[0]}' (known: {', '.join(sorted(fields_))})")
        values = {}
        for key, (kind, default) in fields_.items():
            value = _typed(where, f"{section}.{key}", given[key], kind) if key in given else default
            choices = CHOICES.get(f"{section}.{key}")
            if choices and value not in choices:
                raise _fail(where, f"'{section}.{key}' must be one of {', '.join(choices)}, got {value!r}")
            values[key] = value
        sections[section] = values
    if not sections["data"]["spec"]:
        raise _fail(where, "no data: pass --data SPEC (e.g. --data mura:/path/to/MURA-v1.1)")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail(where, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(where, f"'seeds' repeats a seed: {seeds}")
    teachers = raw.get("teachers", [])
    if not isinstance(teachers, list) or not all(isinstance(t, str) for t in teachers):
        raise _fail(where, "'teachers' must be a list of model names")
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
        strategy = block.get("strategy")
        if strategy not in STRATEGIES:
            raise _fail(where, f"'{at}.strategy' must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        students = block.get("students", [])
        block_teachers = block.get("teachers", [])
        for key, lst in (("students", students), ("teachers", block_teachers)):
            if not isinstance(lst, list) or not all(isinstance(x, str) and x for x in lst):
                raise _fail(where, f"'{at}.{key}' must be a list of model names")
        if not students:
            raise _fail(where, f"'{at}.students' is empty")
        needs = strategy in ("normal", "reverse", "defective", "ensemble")
        if needs and not block_teachers:
            raise _fail(where, f"'{at}': strategy {strategy} needs teachers")
        if not needs and block_teachers:
            raise _fail(where, f"'{at}': strategy {strategy} takes no teachers")
        experiments.append(Experiment(strategy, list(block_teachers), list(students), str(block.get("name", ""))))
    name = str(raw.get("name") or default_name)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise _fail(where, f"'name' may hold letters, digits, '-' and '_' only, got {name!r}")
    return StudyConfig(name=name, source=source, seeds=list(seeds), data=sections["data"], train=sections["train"],
                       kd=sections["kd"], experiments=experiments, teachers=list(teachers),
                       description=str(raw.get("description", "")), raw=raw)
