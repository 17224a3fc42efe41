"""A speed-up with its margin: the ratio of two paths' steady-state rates, with a confidence interval, and the
rule's "faster": the interval's lower bound above 1.0.

Each path's sample is its steady epochs' rates (training images per second of each epoch after the graphs stop
being captured, never the first: ``benchmarks/gpu.py``). The ratio is of the two geometric means; its interval is
Welch's t interval (scipy) on the difference of the mean log rates, exponentiated: speed is multiplicative, and a
log keeps a ratio and its inverse symmetric. A flag is faster when, on every cell it was measured on (each
architecture, cross-entropy and KD), the lower bound is above 1.0. That is an intersection-union test: it
wrongly calls a flag faster with probability at most the one-sided level of one interval (2.5 % at 95 %), however
many cells there are, since all must pass, not any; no correction for the number of cells is needed or made
(``tests/test_bench_gpu.py`` simulates both promises).

An interval needs two steady epochs a path at least; fewer, or a sample without any spread (identical timings, as
on a coarse clock), gives no interval, and so never "faster".
"""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95


def ratio_interval(on: list[float], off: list[float], level: float = LEVEL) -> dict:
    """``on``/``off``: the two paths' steady rates (higher is faster). The ratio on/off of their geometric means and
    its ``level`` interval; ``low``/``high`` None where no interval can be had."""
    from scipy import stats

    a, b = np.log(np.asarray(on, float)), np.log(np.asarray(off, float))
    out = {"ratio": float(math.exp(a.mean() - b.mean())) if len(a) and len(b) else None, "low": None,
           "high": None, "n_on": int(len(a)), "n_off": int(len(b)), "level": level}
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return out
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    if np.isfinite(ci.low) and np.isfinite(ci.high):
        out["low"], out["high"] = float(math.exp(ci.low)), float(math.exp(ci.high))
    return out


def faster(cell: dict) -> bool:
    """One cell's verdict: its interval's lower bound is above 1.0."""
    return cell.get("low") is not None and cell["low"] > 1.0


def all_faster(cells: list[dict]) -> bool:
    """The intersection-union test over a flag's cells: every one faster (and at least one cell)."""
    return bool(cells) and all(faster(c) for c in cells)
