"""The thesis's wide layout, in pure Python (the TUI and the CSV export share it).

Per strategy: rows are (student, split), columns the teachers; then the
``baseline`` column (the same student without a teacher: same data, settings
and seed) and one ``gain <teacher>`` column per teacher. Several seeds in a
cell are averaged; ``n`` counts the runs behind the row.
"""
from __future__ import annotations

from collections import defaultdict
from statistics import fmean
from typing import Any

SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}
PLAIN = ("baseline", "defective-teacher")


def wide_tables(tidy: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """strategy -> {"columns": [...], "rows": [[...], ...]} from tidy rows (see collect.tidy_rows)."""
    by_strategy: dict[str, list[dict]] = defaultdict(list)
    for row in tidy:
        by_strategy[row["strategy"]].append(row)
    out = {}
    for strategy in sorted(by_strategy):
        rows = by_strategy[strategy]
        cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            key = (r["student"], r["split"])
            if r["accuracy"] is None:
                continue
            cells[key][r["teacher"] if strategy not in PLAIN else "accuracy"].append(r["accuracy"])
            if r.get("baseline_accuracy") is not None:
                cells[key]["baseline"].append(r["baseline_accuracy"])
            cells[key]["n"].append(1)
        keys = sorted(cells, key=lambda k: (k[0], SPLIT_ORDER.get(k[1], 9)))
        if strategy in PLAIN:
            columns = ["student", "split", "accuracy", "n"]
            body = [[s, sp, fmean(cells[(s, sp)]["accuracy"]), len(cells[(s, sp)]["n"])] for s, sp in keys]
        else:
            teachers = sorted({r["teacher"] for r in rows})
            columns = ["student", "split", *teachers, "baseline", *(f"gain {t}" for t in teachers), "n"]
            body = []
            for s, sp in keys:
                c = cells[(s, sp)]
                vals = [fmean(c[t]) if c.get(t) else None for t in teachers]
                base = fmean(c["baseline"]) if c.get("baseline") else None
                gains = [v - base if v is not None and base is not None else None for v in vals]
                body.append([s, sp, *vals, base, *gains, len(c["n"])])
        out[strategy] = {"columns": columns, "rows": body}
    return out
