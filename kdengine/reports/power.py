"""Power, said out loud (no torch): the smallest gain a table can mark, and the seeds (and test images) a study needs
to mark a stated one. The tables' notes and ``kdengine study plan`` compute it here, from the same variance
components the intervals are made from (:class:`~.stats.Components`).

The test a cell gets is Student's t of its mean over its estimated standard error, against t on the seeds' S − 1
degrees of freedom at the family's per-cell level. Under a true gain δ the statistic is close to a noncentral t
with noncentrality δ/SE: SE from the components at S seeds and N images, its degrees of freedom Satterthwaite's
(1946) for the mean squares the standard error is made from (``S − 1`` for seeds only; more where the images'
share is estimated from many images). Its power is the normal's tail averaged over the chi-square's quantiles
(scipy's ``nct`` gives NaN or a wrong answer far in its tail at a few degrees of freedom, where these tests live);
scipy's ``brentq`` gives the smallest detectable effect.

The per-cell level: with Holm (or Benjamini–Hochberg) over m cells, a gain in one cell, the rest null, is tested
at α/m (Holm's first step; BH's threshold for one discovery); without correction at α. That is the power a reader
needs to read a missing mark: several true gains in one family are found more easily, so it is a lower bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .stats import ALPHA, Components

POWER = 0.8  # the power every note and plan speaks of
MAX_SEEDS = 200  # a plan beyond this many seeds is no plan: say so


def cell_alpha(correction: str, family: int) -> float:
    """The level one cell is tested at for a gain in it alone: α/m with Holm or BH over m cells, α without."""
    return ALPHA if correction == "none" or family <= 1 else ALPHA / family


def _df(c: Components, seeds: int, images: int) -> float:
    """Satterthwaite's degrees of freedom of the standard error at seeds x images (seeds - 1 for seeds only)."""
    if not images:
        return seeds - 1
    ms_seed = c.residual + images * max(0.0, c.seed)  # the expected mean squares of the two-way table
    ms_image = c.residual + seeds * max(0.0, c.image)
    ms_res = c.residual
    terms = [(ms_seed, seeds - 1), (ms_image, images - 1), (ms_res, (seeds - 1) * (images - 1))]
    num = (ms_seed + ms_image - ms_res) ** 2
    den = sum(ms ** 2 / df for ms, df in terms if df > 0)
    return max(seeds - 1, num / den) if den > 0 else seeds - 1


@lru_cache(maxsize=4096)
def _crit(alpha: float, df: int) -> float:
    from scipy.stats import t  # scipy: only where power is computed

    return float(t.ppf(1 - alpha / 2, df))


GRID = 2000  # points of the chi-square's quantiles the power is averaged over


@lru_cache(maxsize=1024)
def _scales(df: float):
    """sqrt(V/df) at GRID equally likely quantiles of V ~ chi-square(df): the standard error's estimate relative to
    its truth, the noncentral t's denominator."""
    import numpy as np  # numpy and scipy: only where power is computed
    from scipy.stats import chi2

    return np.sqrt(chi2.ppf((np.arange(GRID) + 0.5) / GRID, df) / df)


def _power_at(lam: float, df: float, crit: float) -> float:
    """P(|T| > crit) for T = (Z + lam) / sqrt(V/df), a noncentral t: the normal's tail averaged over the
    chi-square's quantiles. (scipy's ``nct.sf`` is not monotone in the noncentrality at a few degrees of freedom:
    0.23 at 5, 0.19 at 8, 0.71 at 10 with 2.5 df.)"""
    from scipy.special import ndtr  # scipy: as above

    s = _scales(round(float(df), 3))
    return float(min(1.0, (ndtr(lam - crit * s) + ndtr(-crit * s - lam)).mean()))


def power(effect: float, c: Components, seeds: int, images: int, alpha: float) -> float:
    """The chance that a cell with a true gain ``effect`` is marked at level ``alpha`` (two-sided)."""
    if seeds < 2:
        return 0.0
    var = c.variance(seeds, images)
    if not var > 0:
        return 1.0 if effect else 0.0
    return _power_at(abs(effect) / math.sqrt(var), _df(c, seeds, images), _crit(alpha, seeds - 1))


def mde(c: Components, seeds: int, images: int, alpha: float, target: float = POWER) -> float | None:
    """The smallest gain marked with probability ``target`` at seeds x images; None with fewer than 2 seeds."""
    if seeds < 2:
        return None
    var = c.variance(seeds, images)
    if not var > 0:
        return None
    from scipy.optimize import brentq  # scipy: as above

    df, crit = _df(c, seeds, images), _crit(alpha, seeds - 1)
    hi = crit + 4.0  # in standard errors: the noncentrality that reaches the target lies a little past the critical t
    while _power_at(hi, df, crit) < target:
        hi *= 2
        if hi > 1e6:
            return None
    lam = brentq(lambda x: _power_at(x, df, crit) - target, 0.0, hi, xtol=1e-4, rtol=1e-6)
    return float(lam * math.sqrt(var))


@dataclass(frozen=True)
class Step:
    """One line of a plan's arithmetic."""
    seeds: int
    images: int
    se: float
    df: float
    crit: float
    power: float


def step(effect: float, c: Components, seeds: int, images: int, alpha: float) -> Step:
    return Step(seeds, images, math.sqrt(c.variance(seeds, images)), _df(c, seeds, images), _crit(alpha, seeds - 1),
                power(effect, c, seeds, images, alpha))


def seeds_needed(effect: float, c: Components, images: int, alpha: float, target: float = POWER,
                 max_seeds: int = MAX_SEEDS) -> tuple[int | None, list[Step]]:
    """(the fewest seeds that mark ``effect`` with probability ``target`` at ``images`` test images, or None within
    ``max_seeds``; the steps tried, 2 seeds upward)."""
    steps = []
    for s in range(2, max_seeds + 1):
        steps.append(step(effect, c, s, images, alpha))
        if steps[-1].power >= target:
            return s, steps
    return None, steps


def ceiling(effect: float, c: Components, images: int, alpha: float) -> float:
    """The power with unboundedly many seeds at ``images`` test images: the test set's own sampling error (its
    image component over N) caps it."""
    if not images or not c.image > 0:
        return 1.0 if effect else 0.0
    from scipy.stats import norm  # scipy: as above

    z = float(norm.ppf(1 - alpha / 2))
    lam = abs(effect) / math.sqrt(c.image / images)
    return float(norm.sf(z - lam) + norm.cdf(-z - lam))
