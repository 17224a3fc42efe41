"""Statistics over seeds: mean, standard deviation, a 95 % t-interval, and paired gains (no torch)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean, stdev


def t_quantile(df: int, q: float = 0.975) -> float:
    from scipy.stats import t  # scipy (0.3 s): only an interval needs its t quantile

    return float(t.ppf(q, df))


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None  # None with one value
    lo: float | None
    hi: float | None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None

    @property
    def excludes_zero(self) -> bool:
        return self.has_interval and (self.lo > 0 or self.hi < 0)

    def fmt(self, signed: bool = False, interval: bool = True) -> str:
        f = "{:+.4f}" if signed else "{:.4f}"
        text = f.format(self.mean)
        if self.std is not None:
            text += f" ± {self.std:.4f}"
        if interval and self.has_interval:
            text += f" [{f.format(self.lo)}, {f.format(self.hi)}]"
        return text


def summarize(values: list[float], confidence: float = 0.95,
              bounds: tuple[float, float] | None = None) -> Summary | None:
    """Mean, sample std (n - 1) and the t-interval of the mean; no interval with one value.

    ``bounds`` clips the interval to the quantity's range (accuracy lies in [0, 1]): with few seeds a
    t-interval can reach past it, which says only that the data cannot narrow it further.
    """
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    n, mean = len(values), fmean(values)
    if n == 1:
        return Summary(1, mean, None, None, None)
    sd = stdev(values)
    half = t_quantile(n - 1, 0.5 + confidence / 2) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Summary(n, mean, sd, lo, hi)


def paired_gain(treated: dict[int, float], baseline: dict[int, float],
                bounds: tuple[float, float] = (-1.0, 1.0)) -> Summary | None:
    """The gain over the baseline, paired by seed (same seed, same data split): summary of the differences."""
    seeds = sorted(set(treated) & set(baseline))
    return summarize([treated[s] - baseline[s] for s in seeds], bounds=bounds)
