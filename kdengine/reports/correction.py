"""The correction of each table's marks for its many cells (no torch): statsmodels' ``multipletests``.

A table's family is its tested cells: the gains on the test split (and a held-out choice's gain); the train and
val rows describe, they test nothing (the best epoch was chosen on val). Holm (the default) bounds the chance of
any false mark in the table at 5 % under any dependence between the cells, which matters because the gains at
several temperatures, or of several teachers, share one baseline run; Benjamini–Hochberg (``bh``) bounds the
expected share of false marks instead, valid for the positive dependence a shared baseline gives (Benjamini &
Yekutieli 2001); ``none`` marks raw p < 0.05 and says so.
"""
from __future__ import annotations

import gc

from .stats import ALPHA, Summary, with_p_adj

CORRECTIONS = ("holm", "bh", "none")
_METHOD = {"holm": "holm", "bh": "fdr_bh"}
NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg (FDR)", "none": "no correction"}


def adjust(p_values: list[float], correction: str) -> list[float]:
    """Adjusted p-values, in order."""
    if not p_values or correction == "none":
        return list(p_values)
    from statsmodels.stats.multitest import multipletests  # statsmodels (0.5 s): only where a table is built

    # statsmodels' Holm branch calls gc.collect() on every call: 45-110 ms in a process holding torch and pandas,
    # for four numbers. Frozen objects are outside the collector's reach (gc.freeze, the stdlib's own tool for this),
    # so the collection it asks for costs microseconds; the same numbers come out.
    gc.freeze()
    try:
        return [float(p) for p in multipletests(p_values, alpha=ALPHA, method=_METHOD[correction])[1]]
    finally:
        gc.unfreeze()


def correct_table(table, correction: str) -> int:
    """Fill p_adj in every tested cell of ``table`` (a reports.table_model.Table) over its family; returns its size."""
    where = [(i, j) for i, row in enumerate(table.rows) for j, v in enumerate(row)
             if isinstance(v, Summary) and v.tested and v.p is not None]
    adjusted = adjust([table.rows[i][j].p for i, j in where], correction)
    for (i, j), p in zip(where, adjusted):
        table.rows[i][j] = with_p_adj(table.rows[i][j], p)
    return len(where)


def correction_note(correction: str, family: int) -> str:
    cells = f"{family} tested cell{'s' if family != 1 else ''}"
    if correction == "none":
        return f"* raw p < {ALPHA:g}, uncorrected over {cells} (--correction none)."
    return f"* p < {ALPHA:g} after {NAMES[correction]} over {cells} (test split); intervals not adjusted."
