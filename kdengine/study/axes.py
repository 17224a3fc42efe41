"""Sweeps: any setting of ``[train]``, ``[teacher_train]``, ``[kd]`` (and ``data.image_size``) as an axis of a
study (no torch).

A list where a setting takes one value is an axis: ``kd.temperature = [1, 2, 4, 8]``. At the top of a study
file an axis applies to every ``[[experiments]]`` block; inside a block, to that block only (and replaces a top
axis of the same key). Several axes form their product; ``sweep = "zip"`` pairs them value by value instead (the
lists must then be of one length).

A run's value on an axis is read from its spec (:func:`axis_value`), never recorded beside it: reuse needs no
bookkeeping. A baseline does not depend on ``kd.*``, so it has no value on a kd axis and one baseline (per
student, seed and training settings) serves every temperature; a normally trained teacher likewise; a defective
teacher depends on its threshold, so each threshold trains its own. Run ids are content hashes of the spec, so
a study without lists expands to exactly the runs (and ids) it did before sweeps existed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from ..errors import UsageError
from ..options import infos, setting_label, value_text  # noqa: F401 - value_text: axes.value_text for the tables
from ..runspec import CONFIGS, RunSpec

SWEPT_SECTIONS = ("data", "train", "teacher_train", "kd")
# a study may sweep its data's size, and its datasets (a comparison across tasks: medmnist:dermamnist, chestmnist, ...),
# with how each is read; the splits and caps stay one setting of the study
SWEEPABLE_DATA = ("image_size", "source", "color", "uncertain")
MODES = ("product", "zip")
MAX_POINTS = 1000  # a sweep's points per block: past this it is a typo, not a study


@dataclass(frozen=True)
class Axis:
    key: str  # "kd.temperature"
    values: tuple

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


label = setting_label  # a swept setting's name in a table heading (options.py holds the short names)


def norm(value: Any) -> Any:
    """A value as a config holds it (an integer temperature becomes a float): axis values compare by this."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def point_text(point: dict[str, Any]) -> str:
    """'T=2, defect threshold=0.3': one point of a sweep, in words."""
    return ", ".join(f"{label(k)}={value_text(v)}" for k, v in point.items())


def describe(axes: dict[str, list]) -> str:
    """'T (kd.temperature) 1, 2, 4, 8; defect threshold (kd.defect_acc) 0.3, 0.5': a sweep in a line."""
    return "; ".join(f"{label(k)} ({k}) {', '.join(map(value_text, v))}" for k, v in axes.items())


def split_axes(sections: dict[str, dict], where: str) -> tuple[dict[str, dict], list[Axis]]:
    """The sections with their lists taken out (scalars only, each table copied), and the lists as axes."""
    scalars: dict[str, dict] = {}
    axes: list[Axis] = []
    for section, table in sections.items():
        if not isinstance(table, dict):
            scalars[section] = table  # the config reader names the problem
            continue
        scalars[section] = {}
        for key, value in table.items():
            if not isinstance(value, list):
                scalars[section][key] = value
                continue
            dotted = f"{section}.{key}"
            if section not in SWEPT_SECTIONS or (section == "data" and key not in SWEEPABLE_DATA):
                raise UsageError(f"study {where}: '{dotted}' cannot be swept (axes: any [train], [teacher_train] or "
                                 f"[kd] setting, and data.{', data.'.join(SWEEPABLE_DATA)})")
            if not value:
                raise UsageError(f"study {where}: the axis '{dotted}' is an empty list")
            if len({repr(v) for v in value}) != len(value):
                raise UsageError(f"study {where}: the axis '{dotted}' repeats a value: {value}")
            axes.append(Axis(dotted, tuple(value)))
    return scalars, axes


def points(axes: list[Axis], mode: str, where: str) -> list[dict[str, Any]]:
    """Every combination the axes ask for: ``{key: value}`` per point; ``[{}]`` without axes."""
    if mode not in MODES:
        raise UsageError(f"study {where}: 'sweep' must be one of {', '.join(MODES)}, got {mode!r}")
    if not axes:
        return [{}]
    if mode == "zip":
        lengths = {a.key: len(a.values) for a in axes}
        if len(set(lengths.values())) > 1:
            raise UsageError(f"study {where}: sweep = \"zip\" pairs the axes value by value, but their lengths differ: "
                             + ", ".join(f"{k} {n}" for k, n in lengths.items()))
        combos = list(zip(*(a.values for a in axes)))
    else:
        combos = list(itertools.product(*(a.values for a in axes)))
    if len(combos) > MAX_POINTS:
        raise UsageError(f"study {where}: the axes make {len(combos)} combinations (at most {MAX_POINTS})")
    return [dict(zip((a.key for a in axes), combo)) for combo in combos]


def _info(section: str, name: str):
    cls = CONFIGS["train" if section == "teacher_train" else section]
    return next((i for i in infos(cls) if i.name == name), None)


def axis_value(spec: RunSpec, key: str) -> Any:
    """The value of a swept setting that ``spec`` was trained with; None where the setting does not shape the run
    (a baseline on a kd axis, a normal teacher on kd.defect_acc, a normal-KD student on kd.defect_acc)."""
    section, _, name = key.partition(".")
    info = _info(section, name)
    if info is None:
        return None
    if section == "data":
        return getattr(spec.data, name)
    if section == "train":  # a setting the run does not read (Adam's momentum) puts it on no point
        return getattr(spec.train, name) if spec.train.reads(name) else None
    if section == "teacher_train":  # a student's teachers' training; a cross-entropy run has no teacher
        t = spec.teachers[0].train if spec.kind == "kd" and spec.teachers else None
        return getattr(t, name) if t is not None and t.reads(name) else None
    # kd: a student's own KD settings for its strategy; the teacher-scope ones (the defect rule) from its teacher
    if spec.kind == "ce":
        if spec.regime == "defective" and name in ("defect_acc", "defect_check_every"):
            return getattr(spec, name)
        return None
    if info.scope == "teacher":
        t = spec.teachers[0] if spec.teachers else None
        return getattr(t, name) if t is not None and t.regime == "defective" else None
    if not spec.kd.reads(name, spec.strategy):  # a setting the run does not read puts it on no point of the axis
        return None
    return getattr(spec.kd, name)


def run_point(spec: RunSpec, axes: list[str]) -> dict[str, Any]:
    """The run's value on each axis that shapes it."""
    return {k: v for k in axes if (v := axis_value(spec, k)) is not None}


def _default(section: str, name: str) -> Any:
    return _info(section, name).default


def without_axes(spec: RunSpec, keys: list[str]) -> RunSpec:
    """The spec with every swept setting put back to its default: what runs of one sweep row share (the rest of
    their settings, which the tables never blend)."""
    for key in keys:
        section, _, name = key.partition(".")
        if _info(section, name) is None or axis_value(spec, key) is None:
            continue
        default = _default(section, name)
        if section == "data":
            spec = replace(spec, data=replace(spec.data, **{name: default}),
                           teachers=tuple(replace(t, data=replace(t.data, **{name: default})) for t in spec.teachers))
        elif section == "train":  # teachers that trained like the student follow it back
            value = getattr(spec.train, name)
            spec = replace(spec, train=replace(spec.train, **{name: default}),
                           teachers=tuple(replace(t, train=replace(t.train, **{name: default}))
                                          if getattr(t.train, name) == value else t for t in spec.teachers))
        elif section == "teacher_train":
            spec = replace(spec, teachers=tuple(replace(t, train=replace(t.train, **{name: default}))
                                                for t in spec.teachers))
        elif spec.kind == "ce":
            spec = replace(spec, **{name: default})
        elif _info(section, name).scope == "teacher":
            spec = replace(spec, teachers=tuple(replace(t, **{name: default}) if t.regime == "defective" else t
                                                for t in spec.teachers))
        else:
            spec = replace(spec, kd=replace(spec.kd, **{name: default}))
    return spec
