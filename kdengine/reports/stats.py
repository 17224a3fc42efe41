"""Statistics of the tables (no torch): a cell's summary over seeds, the interval of a gain over both the seeds and
the test images, and the p-value every mark is corrected from.

Two intervals (``--interval``):

- ``seeds+images`` (the default, where per-image predictions are stored): the mean over S seeds of a quantity
  scored on the same N test images (a gain: the student's per-image correctness minus its baseline's, same seed,
  same images). Seeds and images are crossed random factors: a new study would draw new seeds *and* a new test
  set, and treating the images as fixed is the "language-as-fixed-effect fallacy" (Clark 1973, J. Verbal Learn.
  Verbal Behav. 12:335). The variance of the grand mean is ``σ²_seed/S + σ²_image/N + σ²_residual/(S·N)``,
  estimated from the two-way table's mean squares (the variance components of a balanced crossed design,
  Searle, Casella & McCulloch 1992, ch. 4) as ``(MS_seed + MS_image − MS_residual)/(S·N)``, the images' component
  floored at zero (then it is exactly the seed-only t-interval), with Student's t on the seeds' S − 1 degrees of
  freedom: the lower bound of Satterthwaite's (1946), which at 3 seeds was liberal in simulation (6.6 % false
  marks at 5 %) where S − 1 held, at most 5.4 %, in every setting simulated. With 2–5 seeds the t keeps it honest
  where a bootstrap over seeds cannot be (it has 3 distinct resamples at 2 seeds, and at 3 seeds a percentile interval is about 1.6 standard errors wide where Student's t needs 4.3: about 75 % coverage, by the quantiles). No
  resampling: the same numbers every time.
- ``seeds``: the t-interval over the seeds alone (the test set held fixed), and the fallback for runs written
  before per-image predictions were stored, and for metrics that are not a mean over images (macro-F1, κ, ECE).

Either way: no interval and no p-value with fewer than 2 seeds, or when every seed gives the same value up to round-off (:data:`SPREAD_RTOL`; a zero
spread is an artefact of a few discrete seeds, never evidence of no noise). A gain's p-value is two-sided
(H0: no gain); the mark ``*`` is given after the table's correction (:mod:`.correction`), never on the raw p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import fmean, stdev

ALPHA = 0.05  # the level of every mark, after correction
CONFIDENCE = 1 - ALPHA
INTERVALS = ("seeds+images", "seeds")
SEEDS_IMAGES, SEEDS = INTERVALS


def t_quantile(df: float, q: float = 0.975) -> float:
    from scipy.stats import t  # scipy (0.3 s): only an interval needs its t quantile

    return float(t.ppf(q, df))


def t_p_value(stat: float, df: float) -> float:
    from scipy.stats import t  # as above

    return float(2 * t.sf(abs(stat), df))


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None  # None with one value
    lo: float | None
    hi: float | None
    p: float | None = None  # a gain's two-sided p-value (H0: no gain); None where no test is made
    p_adj: float | None = None  # the same after the table's correction (None: the cell is not in its family)
    method: str = ""  # what the interval covers: "seeds+images" or "seeds" ("" without interval)
    per_seed: tuple = ()  # ((seed, value), ...): the values the summary is over, by seed
    tested: bool = False  # in its table's family of tests (the test split, a held-out choice)

    @property
    def has_interval(self) -> bool:
        return self.lo is not None

    @property
    def marked(self) -> bool:
        """Significant at ALPHA after the table's correction: the only thing a ``*`` means."""
        return self.p_adj is not None and self.p_adj < ALPHA

    @property
    def excludes_zero(self) -> bool:
        """The raw interval excludes zero (uncorrected: never a mark by itself)."""
        return self.has_interval and (self.lo > 0 or self.hi < 0)

    def fmt(self, signed: bool = False, interval: bool = True, n: bool = False) -> str:
        f = "{:+.4f}" if signed else "{:.4f}"
        text = f.format(self.mean)
        if self.std is not None:
            text += f" ± {self.std:.4f}"
        if interval and self.has_interval:
            text += f" [{f.format(self.lo)}, {f.format(self.hi)}]"
        return text + (f" (n={self.n})" if n else "")

    def seeds_text(self) -> str:
        """'s0:+0.0040 s1:-0.0120': the per-seed values, as the CSV and the report give them."""
        return " ".join(f"s{s}:{v:+.4f}" for s, v in self.per_seed)


# Values that differ by less than this share of their scale are equal: the per-seed means of a study are ratios of
# counts (172/250 - 171/250 is not 201/250 - 200/250 in the last bit), and such round-off must read as no spread,
# not as an interval of width 1e-17 with p = 1e-14 (or a division by zero). A real spread of a mean over N images is
# at least 1/N: 1e-9 leaves room for a billion test images.
SPREAD_RTOL = 1e-9


def no_spread(values) -> bool:
    """Every value the same, up to the floating-point round-off of computing them."""
    vals = [float(v) for v in values]
    return max(vals) - min(vals) <= SPREAD_RTOL * max(1.0, max(abs(v) for v in vals))


def _clip(lo: float, hi: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    return (max(lo, bounds[0]), min(hi, bounds[1])) if bounds is not None else (lo, hi)


def summarize(values: list[float], confidence: float = CONFIDENCE,
              bounds: tuple[float, float] | None = None, seeds: list | None = None,
              test: bool = False) -> Summary | None:
    """Mean, sample std (n - 1) and the t-interval of the mean over seeds; no interval with one value or none
    spread. ``test``: also the two-sided one-sample t-test of a zero mean (a gain's p-value).

    ``bounds`` clips the interval to the quantity's range (accuracy lies in [0, 1]): with few seeds a
    t-interval can reach past it, which says only that the data cannot narrow it further.
    """
    pairs = [(s, v) for s, v in zip(seeds if seeds is not None else range(len(values)), values)
             if v is not None and not math.isnan(v)]
    if not pairs:
        return None
    vals = [v for _, v in pairs]
    per_seed = tuple(pairs) if seeds is not None else ()
    n, mean = len(vals), fmean(vals)
    if n == 1:
        return Summary(1, mean, None, None, None, per_seed=per_seed)
    if no_spread(vals):
        return Summary(n, mean, 0.0, None, None, per_seed=per_seed)
    sd = stdev(vals)
    se = sd / math.sqrt(n)
    half = t_quantile(n - 1, 0.5 + confidence / 2) * se
    lo, hi = _clip(mean - half, mean + half, bounds)
    return Summary(n, mean, sd, lo, hi, p=t_p_value(mean / se, n - 1) if test else None, method=SEEDS,
                   per_seed=per_seed)


def two_way(matrix, means: list[float] | None = None, confidence: float = CONFIDENCE,
            bounds: tuple[float, float] | None = None, seeds: list | None = None,
            test: bool = False) -> Summary | None:
    """The mean of an S x N matrix (seeds x the same test images: per-image correctness, or a student's minus
    its baseline's) with the variance of a crossed seeds x images design (see the module's note), Student's t
    on Satterthwaite's degrees of freedom. ``means``: the per-seed values as metrics.json has them (they equal
    the row means; given, they are what the cell shows)."""
    import numpy as np  # numpy: only where a table is built (kdtui's first screen does not wait for it)

    d = np.asarray(matrix, dtype=np.float64)
    s_count, n_images = d.shape
    rows = list(means) if means is not None else d.mean(1).tolist()
    seeds = list(seeds) if seeds is not None else list(range(s_count))
    if s_count < 2 or n_images < 2 or no_spread(rows) or no_spread(d.mean(1)):
        return summarize(rows, confidence, bounds, seeds, test)
    row_means, col_means, grand = d.mean(1), d.mean(0), d.mean()
    ms_seed = n_images * float(row_means.var(ddof=1))
    ms_image = s_count * float(col_means.var(ddof=1))
    resid = d - row_means[:, None] - col_means[None, :] + grand
    ms_resid = float((resid ** 2).sum()) / ((s_count - 1) * (n_images - 1))
    # Var(mean) = (MS_seed + MS_image - MS_resid) / (S N), the images' component floored at zero; t on the seeds'
    # S - 1 degrees of freedom (Satterthwaite's would be more, and is liberal at 3 seeds: 6.6 % at 5 % measured)
    var = (ms_seed + max(0.0, ms_image - ms_resid)) / (s_count * n_images)
    if not var > 0:  # guarded above; kept so that no rounding can divide by zero
        return summarize(rows, confidence, bounds, seeds, test)
    df = s_count - 1
    se = math.sqrt(var)
    mean = fmean(rows)
    half = t_quantile(df, 0.5 + confidence / 2) * se
    lo, hi = _clip(mean - half, mean + half, bounds)
    return Summary(s_count, mean, stdev(rows), lo, hi, p=t_p_value(mean / se, df) if test else None,
                   method=SEEDS_IMAGES, per_seed=tuple(zip(seeds, rows)))


def paired_gain(treated: dict[int, float], baseline: dict[int, float],
                bounds: tuple[float, float] = (-1.0, 1.0), test: bool = True) -> Summary | None:
    """The gain over the baseline, paired by seed (same seed, same data split), over seeds only: the summary of
    the differences, with its t-test."""
    seeds = sorted(set(treated) & set(baseline))
    return summarize([treated[s] - baseline[s] for s in seeds], bounds=bounds, seeds=seeds, test=test)


def with_p_adj(s: Summary, p_adj: float | None) -> Summary:
    return replace(s, p_adj=p_adj)
