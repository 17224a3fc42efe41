"""Statistics of the tables (no torch): a cell's summary over seeds, the interval of a gain over both the seeds and
the test images, and the p-value every mark is corrected from.

Two intervals (``--interval``):

- ``seeds+images`` (the default, where per-image scores are stored): the mean over S seeds of a quantity scored on
  the same N test images (a gain: the student's per-image correctness minus its baseline's, same seed, same
  images). Seeds and images are crossed random factors: a new study would draw new seeds *and* a new test set, and
  treating the images as fixed is the "language-as-fixed-effect fallacy" (Clark 1973, J. Verbal Learn. Verbal
  Behav. 12:335). The variance of the grand mean is ``σ²_seed/S + σ²_image/N + σ²_residual/(S·N)``, the components
  estimated from the two-way table's mean squares (a balanced crossed design, Searle, Casella & McCulloch 1992, ch.
  4): ``σ²_seed = (MS_seed − MS_res)/N``, ``σ²_image = (MS_image − MS_res)/S``, ``σ²_res = MS_res``. A component
  estimated below zero is set to zero, and the cell says so (:attr:`Summary.floored`): with the seeds' component
  floored, the residual's share stands in for it (``MS_res`` in place of a smaller ``MS_seed``: seeds that agree
  more than their per-image noise allows never narrow the interval below the noise). Student's t on the seeds'
  S − 1 degrees of freedom: the lower bound of Satterthwaite's (1946), which at 3 seeds was liberal in simulation
  (6.6 % false marks at 5 %) where S − 1 held. With 2–5 seeds the t keeps it honest where a bootstrap over seeds
  cannot be (it has 3 distinct resamples at 2 seeds, and at 3 seeds a percentile interval is about 1.6 standard
  errors wide where Student's t needs 4.3: about 75 % coverage, by the quantiles). No resampling: the same
  numbers every time.
- A metric that is not a mean over images (AUROC, average precision, sensitivity, specificity) declares instead
  each image's influence on its value (DeLong's structural components for AUROC; :mod:`.ranking`): their products
  over the images give the test set's variance of each seed's value and its covariance between seeds, and the
  same crossed components follow (:func:`influence_two_way`, method ``seeds+variance``: Obuchowski & Rockette's
  variance of a mean over readers and cases, with seeds as readers; for a mean over images it is :func:`two_way`).
- ``seeds``: the t-interval over the seeds alone (the test set held fixed), and the fallback where the images
  cannot be taken in (the cell's ``fallback`` says why).

Either way: no interval and no p-value with fewer than 2 seeds, or when every seed gives the same value up to
round-off (:data:`SPREAD_RTOL`; a zero spread is an artefact of a few discrete seeds, never evidence of no noise).
A gain's p-value is two-sided (H0: no gain); the mark is given after the family's correction
(:mod:`.families`), never on the raw p. An interval is clipped to the quantity's range, and says so
(:attr:`Summary.clipped`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import fmean, stdev

ALPHA = 0.05  # the level of every mark, after correction
CONFIDENCE = 1 - ALPHA
INTERVALS = ("seeds+images", "seeds")
SEEDS_IMAGES, SEEDS = INTERVALS
SEEDS_VARIANCE = "seeds+variance"  # the seeds, and the test images through each image's declared influence
OVER_IMAGES = (SEEDS_IMAGES, SEEDS_VARIANCE)  # the methods whose interval covers the test images


def t_quantile(df: float, q: float = 0.975) -> float:
    from scipy.stats import t  # scipy (0.3 s): only an interval needs its t quantile

    return float(t.ppf(q, df))


def t_p_value(stat: float, df: float) -> float:
    from scipy.stats import t  # as above

    return float(2 * t.sf(abs(stat), df))


def number(x: float, signed: bool = False, digits: int = 4) -> str:
    """A value as the tables write it: never ``-0.0000`` (a value that rounds to zero has no sign)."""
    if round(x, digits) == 0:
        x = 0.0
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


@dataclass(frozen=True)
class Components:
    """The variance components of a cell, per observation: σ²_seed, σ²_image and σ²_residual (of one seed's score
    on one image), as estimated (a component may come out below zero: kept so, pooling over cells stays unbiased,
    and floored at zero wherever a variance is made of them). Seeds only: ``seed`` is the per-seed values'
    variance and the others are 0. What the intervals and the tables' power (:mod:`.power`) are computed from."""
    seed: float
    image: float = 0.0
    residual: float = 0.0

    def variance(self, seeds: int, images: int = 0) -> float:
        """The variance of the grand mean at ``seeds`` x ``images`` (images 0: the seeds only), each component
        floored at zero."""
        seed, image, residual = max(0.0, self.seed), max(0.0, self.image), max(0.0, self.residual)
        if not images:
            return seed / seeds
        return seed / seeds + image / images + residual / (seeds * images)


@dataclass(frozen=True)
class Summary:
    n: int  # seeds
    mean: float
    std: float | None  # over seeds; None with one value
    lo: float | None
    hi: float | None
    p: float | None = None  # a gain's two-sided p-value (H0: no gain); None where no test is made
    p_adj: float | None = None  # the same after its family's correction (None: the cell is not in a family)
    method: str = ""  # what the interval covers: "seeds+images", "seeds+variance" or "seeds" ("" without interval)
    per_seed: tuple = ()  # ((seed, value), ...): the values the summary is over, by seed
    tested: bool = False  # in a family of tests (the test split's gains, a held-out choice)
    images: int = 0  # the test images the interval covers (0: the seeds only)
    components: Components | None = None  # the variance components it was made from
    floored: tuple = ()  # the components estimated below zero and set to zero: "seeds", "images"
    clipped: bool = False  # the interval reached past the quantity's range and was cut at it
    fallback: str = ""  # why a cell that could cover the test images covers the seeds only
    key: tuple = ()  # what it is computed from (metric, split, run ids): one test per key and family
    family: str = ""  # the family of tests it is corrected in (families.py decides)
    mark: str = ""  # "*", "(*)" (an exploratory family's), "inconclusive" or "" (families.py decides)
    mde: float | None = None  # its family's minimum detectable effect at 80 % power, at its seeds and images

    @property
    def has_interval(self) -> bool:
        return self.lo is not None

    @property
    def marked(self) -> bool:
        """Significant at ALPHA after its family's correction: the only thing a ``*`` means."""
        return self.p_adj is not None and self.p_adj < ALPHA

    @property
    def excludes_zero(self) -> bool:
        """The raw interval excludes zero (uncorrected: never a mark by itself)."""
        return self.has_interval and (self.lo > 0 or self.hi < 0)

    def n_text(self) -> str:
        """'n=3×250' (seeds × test images: the interval covers both) or 'n=3, seeds only'; 'n=1'."""
        if self.images and self.method in OVER_IMAGES:
            return f"n={self.n}×{self.images}"
        return f"n={self.n}, seeds only" if self.method == SEEDS else f"n={self.n}"

    def fmt(self, signed: bool = False, interval: bool = True, n: bool = False) -> str:
        text = number(self.mean, signed)
        if self.std is not None:
            text += f" ± {number(self.std)}"
        if interval and self.has_interval:
            text += f" [{number(self.lo, signed)}, {number(self.hi, signed)}]"
        return text + (f" ({self.n_text()})" if n else "")

    def seeds_text(self) -> str:
        """'s0:+0.0040 s1:-0.0120': the per-seed values, as the CSV and the report give them."""
        return " ".join(f"s{s}:{number(v, True)}" for s, v in self.per_seed)

    def text(self, gain: bool = False, intervals: bool = True, n: bool = True) -> str:
        """The cell as every front end writes it (Markdown, LaTeX, HTML, kdtui): mean ± std [interval]
        (n=seeds×images, or "seeds only"), and its mark ("*", "(*)", "inconclusive") as its family decided it."""
        return self.fmt(signed=gain, interval=intervals, n=n) + (f" {self.mark}" if self.mark else "")

    def detail(self, column: str) -> str:
        """'gain resnet18: n=3×250 · s0:+0.0040 s1:+0.0120 s2:-0.0080 · p=0.21, adjusted 0.63 in students_normal ·
        over seeds and test images · MDE ±0.0610': the cell in full, as kdtui's status line and the report's hover
        show."""
        parts = [f"{column}: {self.n_text()}"]
        if self.per_seed:
            parts.append(self.seeds_text())
        if self.p is not None:
            parts.append(f"p={self.p:.3g}" + (f", adjusted {self.p_adj:.3g} in {self.family}" if self.p_adj is not None
                                               else ", not tested"))
        method = {"seeds+images": "over seeds and test images", "seeds+variance": "over seeds and test images "
                  "(each image's influence)", "seeds": "over seeds only" + (f" ({self.fallback})" if self.fallback else "")}
        parts.append(method.get(self.method, "no interval"))
        if self.floored:
            parts.append(f"{' and '.join(self.floored)}' variance component below zero, set to zero")
        if self.clipped:
            parts.append("interval cut at the quantity's range")
        if self.mde is not None:
            parts.append(f"MDE ±{number(self.mde)} at 80% power")
        if self.mark:
            parts.append(self.mark)
        return " · ".join(parts)


# Values that differ by less than this share of their scale are equal: the per-seed means of a study are ratios of
# counts (172/250 - 171/250 is not 201/250 - 200/250 in the last bit), and such round-off must read as no spread,
# not as an interval of width 1e-17 with p = 1e-14 (or a division by zero). A real spread of a mean over N images is
# at least 1/N: 1e-9 leaves room for a billion test images.
SPREAD_RTOL = 1e-9


def no_spread(values) -> bool:
    """Every value the same, up to the floating-point round-off of computing them."""
    vals = [float(v) for v in values]
    return max(vals) - min(vals) <= SPREAD_RTOL * max(1.0, max(abs(v) for v in vals))


def _clip(lo: float, hi: float, bounds: tuple[float, float] | None) -> tuple[float, float, bool]:
    if bounds is None:
        return lo, hi, False
    return max(lo, bounds[0]), min(hi, bounds[1]), lo < bounds[0] or hi > bounds[1]


def _interval(mean: float, se: float, df: int, confidence: float, bounds, test: bool) -> dict:
    half = t_quantile(df, 0.5 + confidence / 2) * se
    lo, hi, clipped = _clip(mean - half, mean + half, bounds)
    return {"lo": lo, "hi": hi, "clipped": clipped, "p": t_p_value(mean / se, df) if test else None}


def summarize(values: list[float], confidence: float = CONFIDENCE,
              bounds: tuple[float, float] | None = None, seeds: list | None = None,
              test: bool = False) -> Summary | None:
    """Mean, sample std (n - 1) and the t-interval of the mean over seeds; no interval with one value or none
    spread. ``test``: also the two-sided one-sample t-test of a zero mean (a gain's p-value).

    ``bounds`` clips the interval to the quantity's range (accuracy lies in [0, 1]): with few seeds a
    t-interval can reach past it, which says only that the data cannot narrow it further (``clipped`` says so).
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
    return Summary(n, mean, sd, method=SEEDS, per_seed=per_seed, components=Components(sd ** 2),
                   **_interval(mean, sd / math.sqrt(n), n - 1, confidence, bounds, test))


def two_way(matrix, means: list[float] | None = None, confidence: float = CONFIDENCE,
            bounds: tuple[float, float] | None = None, seeds: list | None = None,
            test: bool = False) -> Summary | None:
    """The mean of an S x N matrix (seeds x the same test images: per-image correctness, or a student's minus
    its baseline's) with the variance of a crossed seeds x images design (see the module's note), Student's t
    on the seeds' S - 1 degrees of freedom. ``means``: the per-seed values as metrics.json has them (they equal
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
    # the components, each floored at zero (and said): a negative estimate is noise or seeds that agree more than
    # their images' noise allows; either way it must not narrow the interval
    seed_c, image_c = (ms_seed - ms_resid) / n_images, (ms_image - ms_resid) / s_count
    floored = tuple(name for name, c in (("seeds", seed_c), ("images", image_c)) if c < 0)
    comps = Components(seed_c, image_c, ms_resid)
    var = comps.variance(s_count, n_images)
    if not var > 0:  # an exactly additive matrix: nothing varies but the seeds' constant shifts
        return summarize(rows, confidence, bounds, seeds, test)
    mean = fmean(rows)
    return Summary(s_count, mean, stdev(rows), method=SEEDS_IMAGES, per_seed=tuple(zip(seeds, rows)),
                   images=n_images, components=comps, floored=floored,
                   **_interval(mean, math.sqrt(var), s_count - 1, confidence, bounds, test))


def influence_two_way(influence, means: list[float], confidence: float = CONFIDENCE,
                      bounds: tuple[float, float] | None = None, seeds: list | None = None,
                      test: bool = False, images: int | None = None) -> Summary | None:
    """The crossed seeds x images interval of a metric that is not a mean over images (AUROC, average precision,
    sensitivity), from each seed's per-image influence on its value (an S x N matrix on the same images, of a gain
    the student's minus its baseline's; :mod:`.ranking`) and the per-seed ``means`` (values, or gains).

    The influences' products over the images are the metric's covariances over the test set: each seed's own
    (``own``: its DeLong variance, for AUROC; of a gain DeLong's paired one) and between two seeds (``cross``: the
    share of the test set's sampling error the seeds have in common, which averaging over seeds does not shrink).
    The variance of the mean over seeds is then the seeds' spread over S plus ``cross``: the Obuchowski-Rockette
    (1995, Commun. Stat. Simul. Comput. 24:285) variance of a mean AUROC over readers (here: seeds) and cases
    (images), with the seed x image interaction counted once, in the seeds' spread. As variance components per
    observation: ``σ²_image = N·cross``, ``σ²_residual = N·(own − cross)``, ``σ²_seed = s²_seeds − (own − cross)``,
    each floored at zero as :func:`two_way` floors them (seeds that agree more than the test set's noise allows never
    narrow the interval below it). For a mean over images, with each image's deviation from it over sqrt(N(N-1))
    as its influence, these are :func:`two_way`'s components exactly (tested). Student's t on S − 1 degrees of
    freedom (the lower bound of Hillis 2007's, as for :func:`two_way`). ``images``: the test images among the
    columns (default all; the rest another random sample's share, as the val images' draws of a threshold metric:
    counted in the variance, and per test image in the components)."""
    import numpy as np  # numpy: only where a table is built

    phi = np.asarray(influence, dtype=np.float64)
    rows = [float(v) for v in means]
    seeds = list(seeds) if seeds is not None else list(range(len(rows)))
    s_count, n_images = phi.shape[0], phi.shape[1] if images is None else images
    if s_count < 2 or n_images < 2 or no_spread(rows):
        return summarize(rows, confidence, bounds, seeds, test)
    gram = phi @ phi.T
    own = float(np.trace(gram)) / s_count
    cross = float(gram.sum() - np.trace(gram)) / (s_count * (s_count - 1))
    spread = stdev(rows) ** 2
    comps = Components(spread - (own - cross), n_images * cross, n_images * (own - cross))
    floored = tuple(name for name, c in (("seeds", comps.seed), ("images", comps.image)) if c < 0)
    var = comps.variance(s_count, n_images)
    if not var > 0:
        return summarize(rows, confidence, bounds, seeds, test)
    mean = fmean(rows)
    return Summary(s_count, mean, math.sqrt(spread), method=SEEDS_VARIANCE, per_seed=tuple(zip(seeds, rows)),
                   images=n_images, components=comps, floored=floored,
                   **_interval(mean, math.sqrt(var), s_count - 1, confidence, bounds, test))


def paired_gain(treated: dict[int, float], baseline: dict[int, float],
                bounds: tuple[float, float] = (-1.0, 1.0), test: bool = True) -> Summary | None:
    """The gain over the baseline, paired by seed (same seed, same data split), over seeds only: the summary of
    the differences, with its t-test."""
    seeds = sorted(set(treated) & set(baseline))
    return summarize([treated[s] - baseline[s] for s in seeds], bounds=bounds, seeds=seeds, test=test)


def with_p_adj(s: Summary, p_adj: float | None) -> Summary:
    return replace(s, p_adj=p_adj)
