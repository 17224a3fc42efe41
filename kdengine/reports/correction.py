"""The correction of a family's marks for its many cells (no torch): statsmodels' ``multipletests``. Which cells form
a family, and what a mark means, is decided in :mod:`.families`.

Holm (the default) bounds the chance of any false mark in the family at 5 % under any dependence between its
cells, which matters because the gains at several temperatures, or of several teachers, share one baseline run;
Benjamini–Hochberg (``bh``) bounds the expected share of false marks instead, valid for the positive dependence
a shared baseline gives (Benjamini & Yekutieli 2001); ``none`` marks raw p < 0.05 and says so.
"""
from __future__ import annotations

import gc

from .stats import ALPHA

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
