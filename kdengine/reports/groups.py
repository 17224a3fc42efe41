"""Settings groups: which runs a table may average over seeds, and how the groups are named and ordered (no torch).

Runs whose data or settings differ are never blended: each settings group gets its own rows, and a note says what
differs. A group's label is decided once per set of runs (:func:`study_groups`) and every output uses it: the
tables' settings column, runs.csv, robustness_cells.csv, the figures and the report. In a sweep it is the run's
point (``T=2``), with a letter for what else differs (``T=2 B``); a run on no axis (a baseline) serves every point.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import SimpleNamespace

from ..store.records import RunRecord, differing_keys, flat_settings
from ..study.axes import point_text, run_point, without_axes


def severity_text(levels: list[int]) -> str:
    """1..5 for a run of levels, else the levels themselves: 1, 3, 5."""
    levels = sorted(levels)
    if len(levels) > 2 and levels == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]}..{levels[-1]}"
    return ", ".join(map(str, levels))


EVERY_POINT = "every point"  # the settings group of runs on no axis of a sweep (one baseline serves every point)


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"S{i}"


def _partition(flats: dict[str, dict], keys: set) -> tuple[dict[str, str], dict[str, dict]]:
    """run id -> its identity over ``keys`` (those it has), and each identity's settings, in order of first run."""
    of, idents = {}, {}
    for rid in sorted(flats):
        ident = {k: v for k, v in flats[rid].items() if k in keys}
        of[rid] = repr(sorted(ident.items()))
        idents.setdefault(of[rid], ident)
    return of, idents


def settings_groups(records: list[RunRecord]) -> tuple[dict[str, str], list[str]]:
    """run_id -> group label ("" when all share one settings), and one note per group saying what differs.

    A setting that does not apply to a run (a cross-entropy run has no ``kd.*``, no teacher) is no difference:
    the groups are first lettered by the settings every run has (a teacher, its baseline and their student share
    a letter), then, within a letter, told apart by a setting only some runs have where it varies among them (two
    temperatures: ``A1``, ``A2``, or ``A``, ``B`` where one letter holds every run); a run without it keeps the
    letter alone."""
    flats = {r.run_id: flat_settings(r.spec) for r in records}
    if not flats:
        return {}, []
    everyone = set.intersection(*(set(f) for f in flats.values()))
    base_of, base_idents = _partition(flats, everyone)
    base_order = list(base_idents)
    several = len(base_order) > 1
    labels, idents = {}, {}
    for b, base in enumerate(base_order):
        members = {rid: flats[rid] for rid in flats if base_of[rid] == base}
        partial = {k for f in members.values() for k in f} - everyone
        varying = {k for k in partial if len({repr(f[k]) for f in members.values() if k in f}) > 1}
        sub_of, sub_idents = _partition(members, varying)
        subs = [k for k in sub_idents if sub_idents[k]]  # identities that hold a varying setting
        for rid in members:
            ident = {**base_idents[base], **sub_idents[sub_of[rid]]}
            if len(subs) > 1 and sub_idents[sub_of[rid]]:
                i = subs.index(sub_of[rid])
                label = f"{_letter(b)}{i + 1}" if several else _letter(i)
            else:
                label = _letter(b) if several else ""
            labels[rid] = label
            idents.setdefault(label, ident)
    if set(labels.values()) == {""}:
        return labels, []
    shown = [k for k in idents if k]
    varying = sorted({k for k in differing_keys([idents[k] for k in shown])
                      if len({repr(idents[g][k]) for g in shown if k in idents[g]}) > 1})
    notes = [f"settings {g}: " + ", ".join(f"{n}={idents[g][n]}" if n in idents[g] else f"{n}: n/a" for n in varying)
             for g in sorted(shown, key=natural_key)]
    return labels, notes


def natural_key(text: str) -> tuple:
    """'T=16' after 'T=2': numbers inside a label compare as numbers."""
    parts = re.split(r"(-?\d+(?:\.\d+)?)", text)
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p)


def group_rank(groups: dict[str, str]) -> dict[str, int]:
    """Each settings group's place in a table: A before B, and a sweep's T=2 before T=16."""
    return {g: i for i, g in enumerate(sorted(set(groups.values()), key=natural_key))}


@dataclass
class Groups:
    """Every run's settings label, decided once (see the module's note)."""
    labels: dict[str, str]  # run id -> its label ("" where one group holds every run)
    rest: dict[str, str] = field(default_factory=dict)  # run id -> the letter of what differs beyond a sweep's axes
    notes: dict[str, str] = field(default_factory=dict)  # letter -> "settings A: train.epochs=2, ..."

    def of(self, run_ids) -> tuple[dict[str, str], list[str]]:
        """(run id -> label, the notes on what the letters among them mean) for the runs of one table; every label
        "" where one group holds them all (the table needs no settings column)."""
        mine = {i: self.labels.get(i, "") for i in run_ids}
        if len(set(mine.values())) <= 1:
            return {i: "" for i in mine}, []
        letters = sorted({self.rest.get(i, "") for i in mine} - {""}, key=natural_key)
        return mine, [self.notes[k] for k in letters if k in self.notes]


def study_groups(records: list[RunRecord], axes: list[str] | None = None) -> Groups:
    """The labels of a set of runs: letters for settings that differ (``settings_groups``), and in a sweep the point
    first (the letters then over what the axes leave)."""
    axes = list(axes or [])
    readable = [r for r in records if r.spec is not None]
    if not axes:
        labels, notes = settings_groups(readable)
        return Groups(labels, dict(labels), {n.split(":")[0].removeprefix("settings "): n for n in notes})
    rest, notes = settings_groups([SimpleNamespace(run_id=r.run_id, spec=without_axes(r.spec, axes))
                                   for r in readable])
    labels = {}
    for r in readable:
        point = point_text(run_point(r.spec, axes))
        labels[r.run_id] = " ".join(x for x in (point or EVERY_POINT, rest[r.run_id]) if x)
    return Groups(labels, rest, {n.split(":")[0].removeprefix("settings "): n for n in notes})
