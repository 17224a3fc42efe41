"""Settings groups: which runs a table may average over seeds, and how the groups are named and ordered (no torch).

Runs whose data or settings differ are never blended: each settings group gets its own rows, labelled A, B, ...
(or, in a sweep, by its point: T=2), and a note says what differs."""
from __future__ import annotations

import re

from ..store.records import RunRecord, differing_keys, flat_settings


def severity_text(levels: list[int]) -> str:
    """1..5 for a run of levels, else the levels themselves: 1, 3, 5."""
    levels = sorted(levels)
    if len(levels) > 2 and levels == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]}..{levels[-1]}"
    return ", ".join(map(str, levels))


EVERY_POINT = "every point"  # the settings group of runs on no axis of a sweep (one baseline serves every point)


def settings_groups(records: list[RunRecord], names: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """run_id -> group label ("" when all share one settings), and one note per group saying what differs.
    ``names`` (run id -> its sweep point, "T=2") names the groups when they are exactly a sweep's points.

    A setting that does not apply to a run (a cross-entropy run has no ``kd.*``, no teacher) is no difference:
    runs differ only where both have the setting and its values differ. A setting only some runs have
    tells runs apart only where it varies among those that have it (two temperatures)."""
    flats = {r.run_id: flat_settings(r.spec) for r in records}
    if not flats:
        return {}, []
    everyone = set.intersection(*(set(f) for f in flats.values()))
    partial = {k for f in flats.values() for k in f} - everyone
    varying_partial = {k for k in partial if len({repr(f[k]) for f in flats.values() if k in f}) > 1}
    keep = everyone | varying_partial
    keys: dict[str, str] = {}
    idents: dict[str, dict] = {}
    for rid, flat in flats.items():
        ident = {k: v for k, v in flat.items() if k in keep}
        k = repr(sorted(ident.items()))
        keys[rid] = k
        idents.setdefault(k, ident)
    if len(idents) <= 1:
        return {rid: "" for rid in keys}, []
    order = sorted(idents, key=lambda k: min(rid for rid in keys if keys[rid] == k))
    labels = {k: chr(ord("A") + i) if i < 26 else f"S{i}" for i, k in enumerate(order)}
    if names:  # a sweep: groups that are exactly its points are named by them ("T=2") rather than lettered
        named = {k: {names.get(rid, "") for rid in keys if keys[rid] == k} for k in order}
        if all(len(n) == 1 for n in named.values()) and len({next(iter(n)) for n in named.values()}) == len(order):
            # one group may be on no axis (the baselines of a kd sweep): it serves every point
            labels = {k: next(iter(n)) or EVERY_POINT for k, n in named.items()}
    varying = sorted({k for k in differing_keys([i for i in idents.values()])
                      if len({repr(i[k]) for i in idents.values() if k in i}) > 1})
    notes = [f"settings {labels[k]}: " + ", ".join(f"{n}={idents[k][n]}" if n in idents[k] else f"{n}: n/a"
                                                   for n in varying) for k in order]
    return {rid: labels[k] for rid, k in keys.items()}, notes


def natural_key(text: str) -> tuple:
    """'T=16' after 'T=2': numbers inside a label compare as numbers."""
    parts = re.split(r"(-?\d+(?:\.\d+)?)", text)
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p)


def group_rank(groups: dict[str, str]) -> dict[str, int]:
    """Each settings group's place in a table: A before B, and a sweep's T=2 before T=16."""
    return {g: i for i, g in enumerate(sorted(set(groups.values()), key=natural_key))}
