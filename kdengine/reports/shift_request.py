"""Which request's results under acquisition shift a table reads (no torch, no cv2 at import).

A run keeps one entry per request (kdengine.shift.evaluate): the shifts, severities, seed and external data asked
for. Tables never blend requests: a study's tables read the study's own ``[shift]``; ``kdengine shift`` shows the
request it just made; any other set of runs reads the request most of its runs have (the latest among equals), and
the note says how many runs were evaluated otherwise.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from ..store.records import RunRecord


def shift_key(shifts: list[str], severities: list[int], seed: int, external: str | None) -> dict:
    """A request as its results are keyed: the shifts in the catalogue's order, the severities sorted."""
    from ..data.corruptions import SHIFT_VERSION, SHIFTS  # cv2 (0.1 s): only where a request is named

    return {"version": SHIFT_VERSION, "shifts": [s for s in SHIFTS if s in set(shifts)],
            "severities": sorted(set(int(v) for v in severities)), "seed": int(seed), "external": external}


def same_request(a: dict | None, b: dict | None) -> bool:
    """Two keys ask for the same evaluation: the same shifts and severities in any order (a key stored before the
    catalogue's order was kept lists them as they were typed), seed, external data and version."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a == b
    return _unordered(a) == _unordered(b)


def _unordered(key: dict) -> dict:
    return {**key, "shifts": sorted(key.get("shifts") or []), "severities": sorted(key.get("severities") or [])}


def study_request(config: dict | None) -> dict | None:
    """The key of a study file's ``[shift]`` (as its record keeps the file), or None without one."""
    table = (config or {}).get("shift")
    if not isinstance(table, dict):
        return None
    from ..data.corruptions import ShiftConfig, parse_severities, parse_shifts  # cv2: as above
    from ..options import from_table

    sh = from_table(ShiftConfig, table, "study [shift]")
    return shift_key(parse_shifts(sh.shifts), parse_severities(sh.severities), sh.seed, sh.external)


def _described(key: dict) -> str:
    from .groups import severity_text  # only where a note is written

    return (f"{len(key.get('shifts', []))} shift(s) at severities {severity_text(key.get('severities', []))}, "
            f"seed {key.get('seed')}" + (f", external {key['external']}" if key.get("external") else ""))


def _entries(r: RunRecord) -> list[dict]:
    """A run's results by request (a record made in memory with ``shift`` alone has that one)."""
    return list(r.shifts.values()) or ([r.shift] if r.shift else [])


def choose(records: list[RunRecord], key: dict | None = None) -> tuple[list[RunRecord], dict | None, str | None]:
    """(the records with ``shift`` set to the chosen request's results, or None where a run has none; the key;
    a note on runs evaluated under other requests, or None)."""
    entries = {r.run_id: _entries(r) for r in records}
    everything = [e for es in entries.values() for e in es]
    if not everything:
        return records, key, None
    if key is None:
        counts = Counter(repr(e.get("key")) for e in everything)
        best = max(everything, key=lambda e: (counts[repr(e.get("key"))], e.get("at", 0)))
        key = best.get("key")
    out, other = [], 0
    for r in records:
        mine = next((e for e in entries[r.run_id] if same_request(e.get("key"), key)), None)
        other += mine is None and bool(entries[r.run_id])
        out.append(r if mine is r.shift else replace(r, shift=mine, shift_preds=None))
    note = None
    if other and key is not None:
        note = (f"Under shift: the request of {_described(key)}; {other} run(s) evaluated only under other "
                "requests are not in these rows (each request's results are kept: `kdengine shift` with that "
                "request shows them).")
    return out, key, note
