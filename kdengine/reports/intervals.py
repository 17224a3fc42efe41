"""A table cell from the runs it summarises (no torch): a metric over seeds, or a gain over each run's own
baseline paired by seed, with the interval the options ask for (:mod:`.stats`).

With ``seeds+images`` and per-image predictions stored for every run of the cell, the accuracy's interval covers
the test images as well as the seeds: the runs are lined up image by image (the same rows of the decoded cache,
checked), student against baseline within a seed. Where that cannot be done (runs from before predictions were
stored, the train split, a metric that is not a mean over images, images that do not line up) the cell falls
back to the seeds alone, and its ``method`` says so; the table's note counts both kinds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..store.records import RunRecord, finished_baseline
from .stats import SEEDS, SEEDS_IMAGES, Summary, summarize, two_way
from .table_model import METRICS, gain_bounds

PER_IMAGE_METRICS = ("accuracy",)  # a mean over images: what the images' share of the variance is known for


@dataclass(frozen=True)
class StatsOptions:
    interval: str = SEEDS_IMAGES  # what an interval covers: "seeds+images" or "seeds"
    correction: str = "holm"  # across each table's tested cells: holm, bh, none


def by_seed(runs: list[RunRecord]) -> dict[int, RunRecord]:
    """One run per seed (the last listed, as the tables always took)."""
    return {r.seed: r for r in runs if r.seed is not None}


def _correct(r: RunRecord, split: str):
    """(cache rows, per-image correctness as floats) of a run on a split, or None without predictions."""
    p = r.predictions(split)
    return None if p is None else (p["row"], (p["pred"] == p["label"]).astype(float))


def _matrix(rows: list[list[RunRecord]], split: str):
    """S x N: per seed the per-image correctness of each listed run, minus that of the second one (a gain) or
    alone; None unless every run has predictions on the same images."""
    import numpy as np  # numpy: only where a table is built (see stats)

    got = [[_correct(r, split) for r in runs] for runs in rows]
    if any(c is None for cs in got for c in cs):
        return None
    first = got[0][0][0]
    if any(len(c[0]) != len(first) or not np.array_equal(c[0], first) for cs in got for c in cs):
        return None
    return np.stack([cs[0][1] - cs[1][1] if len(cs) == 2 else cs[0][1] for cs in got])


def _per_image(metric: str, split: str, opts: StatsOptions) -> bool:
    return opts.interval == SEEDS_IMAGES and metric in PER_IMAGE_METRICS and split != "train"


def value_summary(runs: list[RunRecord], split: str, metric: str, opts: StatsOptions) -> Summary | None:
    """A metric over seeds (one run per seed), with its interval."""
    seeds = sorted((s, r) for s, r in by_seed(runs).items() if r.metric(split, metric) is not None)
    if not seeds:
        return None
    values = [r.metric(split, metric) for _, r in seeds]
    bounds = METRICS[metric][1]
    d = _matrix([[r] for _, r in seeds], split) if _per_image(metric, split, opts) else None
    if d is not None:
        return two_way(d, values, bounds=bounds, seeds=[s for s, _ in seeds])
    return summarize(values, bounds=bounds, seeds=[s for s, _ in seeds])


def gain_summary(pairs: list[tuple[RunRecord, RunRecord]], split: str, metric: str, opts: StatsOptions,
                 test: bool | None = None) -> Summary | None:
    """The gain of each run over its own baseline, paired by seed, with its interval; ``test`` (the default on
    the test split): a p-value, and a place in the table's family of tests."""
    test = split == "test" if test is None else test
    seeds = sorted((s, (r, b)) for s, (r, b) in {r.seed: (r, b) for r, b in pairs if r.seed is not None}.items()
                   if r.metric(split, metric) is not None and b.metric(split, metric) is not None)
    if not seeds:
        return None
    gains = [r.metric(split, metric) - b.metric(split, metric) for _, (r, b) in seeds]
    order = [s for s, _ in seeds]
    bounds = gain_bounds(metric)
    d = _matrix([list(pair) for _, pair in seeds], split) if _per_image(metric, split, opts) else None
    s = (two_way(d, gains, bounds=bounds, seeds=order, test=test) if d is not None
         else summarize(gains, bounds=bounds, seeds=order, test=test))
    return tested(s, test)


def tested(s: Summary | None, test: bool = True) -> Summary | None:
    """The cell, in its table's family of tests when ``test`` and it has a p-value (the correction adjusts it)."""
    return replace(s, tested=test and s.p is not None) if s is not None else None


def paired(runs: list[RunRecord], by_id: dict[str, RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    """(run, its finished baseline) for each run that has one."""
    return [(r, b) for r in runs if (b := finished_baseline(r, by_id)) is not None]


def interval_note(table, opts: StatsOptions, metric: str = "accuracy") -> str | None:
    """What the intervals of a table cover, counted over its cells, and why a cell covers the seeds only."""
    cells = [v for row in table.rows for v in row if isinstance(v, Summary) and v.has_interval]
    if not cells:
        return None
    both = sum(v.method == SEEDS_IMAGES for v in cells)
    seeds_only = sum(v.method == SEEDS for v in cells)
    parts = []
    if both:
        parts.append(f"{both} over seeds and test images (crossed variance components, t on the seeds' df)")
    if seeds_only:
        if opts.interval == SEEDS:
            why = "--interval seeds"
        elif metric not in PER_IMAGE_METRICS or table.name.startswith("robustness"):
            why = "the metric is not a mean over test images"
        else:
            why = "train split, or runs without predictions.npz"
        parts.append(f"{seeds_only} over seeds only ({why})")
    return "95% intervals: " + "; ".join(parts) + ". None with < 2 seeds or no spread between them."
