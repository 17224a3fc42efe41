"""A table cell from the runs it summarises (no torch): a metric over seeds, or a gain over each run's own
baseline paired by seed, with the interval the options ask for (:mod:`.stats`).

**How a metric's interval takes in the test images is declared once per metric** (:func:`register_interval`, the
extension point every table uses):

- :data:`MEAN`: the metric is a mean over images of a per-image score (accuracy: correctness); the cell lines the
  runs up image by image (the same rows of the decoded cache, checked), student against baseline within a seed,
  and takes the crossed seeds x images interval (:func:`~.stats.two_way`);
- :data:`VARIANCE`: the metric is not a mean over images (AUROC, average precision) but each seed's value has a
  variance over the test set (DeLong's, of a gain the paired one): the seeds' variance and that one are added
  (:func:`~.stats.seeds_plus_variance`). Adding AUROC is one ``register_interval("auroc", OverImages(VARIANCE,
  variance=...))``.

Where the images cannot be taken in (``--interval seeds``, the train split, a metric that declares neither, runs
without per-image predictions, images that do not line up) the cell covers the seeds alone, and its ``fallback``
says which of these it was; the table's note counts them by reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from ..store.records import RunRecord, finished_baseline
from .stats import OVER_IMAGES, SEEDS, SEEDS_IMAGES, Summary, seeds_plus_variance, summarize, two_way
from .table_model import METRICS, gain_bounds

MEAN, VARIANCE = "mean over images", "per-seed variance over images"

# why a cell covers the seeds only (the note counts them by these)
ASKED = "--interval seeds"
TRAIN = "train split (no per-image predictions on train)"
NOT_DECLARED = "not a mean over test images (and no per-seed variance declared)"
MISSING = "runs without per-image predictions: predictions.npz, trained before they were stored"
MISALIGNED = "the runs' test images do not line up (other images or order)"


@dataclass(frozen=True)
class OverImages:
    """How a metric's interval takes in the test images (see the module's note)."""
    kind: str  # MEAN or VARIANCE
    # MEAN: (run, split) -> (image ids, per-image scores), or None where the run has none
    scores: Callable | None = None
    # VARIANCE: (run, its baseline or None, split) -> (the variance of the value, or of the gain over the baseline,
    # over the test set; the number of test images), or None
    variance: Callable | None = None
    missing: str = MISSING  # what a run without scores lacks, in the note's words


INTERVAL_OF: dict[str, OverImages] = {}


def register_interval(metric: str, how: OverImages) -> OverImages:
    """Declare how ``metric``'s interval takes in the test images (one entry per metric)."""
    if how.kind not in (MEAN, VARIANCE) or (how.kind == MEAN) != (how.scores is not None):
        raise ValueError(f"{metric}: a {MEAN} interval needs scores, a {VARIANCE} one a variance")
    INTERVAL_OF[metric] = how
    return how


def correctness(r: RunRecord, split: str):
    """(cache rows, per-image correctness as floats) of a run on a split, or None without predictions."""
    p = r.predictions(split)
    return None if p is None else (p["row"], (p["pred"] == p["label"]).astype(float))


SHIFT_MISSING = "runs evaluated under shift before per-image predictions were kept: kdengine shift --force"


def shift_scores(column: str) -> Callable:
    """Per-image scores under the run's chosen shift request: correctness on the clean images ("clean"), its mean
    over every cell of the request ("under shift"), over one shift's severities (a shift's name), or on the
    external data ("external"). Each is a mean over images, as its table's value is."""
    def scores(r: RunRecord, split: str):
        import numpy as np  # numpy: only where a table is built

        a = r.shift_predictions() if split == "test" else None
        if a is None:
            return None
        if column == "external":
            e = a.get("external")
            return None if e is None else (np.arange(len(e["pred"])), (e["pred"] == e["label"]).astype(float))
        if column == "clean":
            return a["row"], (a["clean"] == a["label"]).astype(float)
        cells = a["cells"] if column == "under shift" else {column: a["cells"].get(column, {})}
        preds = [p for levels in cells.values() for p in levels.values()]
        return (a["row"], np.mean([p == a["label"] for p in preds], axis=0)) if preds else None
    return scores


register_interval("accuracy", OverImages(MEAN, scores=correctness))
register_interval("shift_mean", OverImages(MEAN, scores=shift_scores("under shift"), missing=SHIFT_MISSING))


@dataclass(frozen=True)
class StatsOptions:
    interval: str = SEEDS_IMAGES  # what an interval covers: "seeds+images" or "seeds"
    correction: str = "holm"  # across each family's tested cells: holm, bh, none
    primary: str = ""  # the study's primary family ("" none declared): corrected alone, the rest exploratory


def by_seed(runs: list[RunRecord]) -> dict[int, RunRecord]:
    """One run per seed (the last listed, as the tables always took)."""
    return {r.seed: r for r in runs if r.seed is not None}


def _matrix(units: list[tuple], split: str, how: OverImages):
    """(S x N: per seed the per-image scores of its run, minus its baseline's for a gain; None and why not)."""
    import numpy as np  # numpy: only where a table is built (see stats)

    got = [[how.scores(r, split) for r in unit] for unit in units]
    if any(c is None for cs in got for c in cs):
        return None, how.missing
    first = got[0][0][0]
    if any(len(c[0]) != len(first) or not np.array_equal(c[0], first) for cs in got for c in cs):
        return None, MISALIGNED
    return np.stack([cs[0][1] - cs[1][1] if len(cs) == 2 else cs[0][1] for cs in got]), ""


def _why_seeds(how: OverImages | None, split: str, opts: StatsOptions, none_reason: str) -> str:
    if opts.interval == SEEDS:
        return ASKED
    if split == "train":
        return TRAIN
    return none_reason if how is None else ""


def over_seeds(units: list[tuple[int, tuple]], values: list[float], split: str, how: OverImages | None,
               opts: StatsOptions, bounds, test: bool, key: tuple, none_reason: str = NOT_DECLARED) -> Summary | None:
    """The one place a cell's interval is decided: ``units`` (seed, (run,) or (run, baseline)) in seed order and
    their per-seed ``values`` (a metric, or a gain); ``how``: the quantity's declaration (None: none, for
    ``none_reason``)."""
    seeds = [s for s, _ in units]
    reason = _why_seeds(how, split, opts, none_reason)
    s = None
    if not reason and how.kind == MEAN:
        d, reason = _matrix([u for _, u in units], split, how)
        if d is not None:
            s = two_way(d, values, bounds=bounds, seeds=seeds, test=test)
    elif not reason:
        got = [how.variance(u[0], u[1] if len(u) == 2 else None, split) for _, u in units]
        if any(g is None for g in got):
            reason = how.missing
        else:
            s = seeds_plus_variance(values, [g[0] for g in got], min(g[1] for g in got), bounds=bounds,
                                    seeds=seeds, test=test)
    if s is None:
        s = summarize(values, bounds=bounds, seeds=seeds, test=test)
    if s is None:
        return None
    return replace(s, fallback=reason if s.method == SEEDS else "", key=key, tested=test and s.p is not None)


def value_summary(runs: list[RunRecord], split: str, metric: str, opts: StatsOptions) -> Summary | None:
    """A metric over seeds (one run per seed), with its interval."""
    seeds = sorted((s, r) for s, r in by_seed(runs).items() if r.metric(split, metric) is not None)
    if not seeds:
        return None
    return over_seeds([(s, (r,)) for s, r in seeds], [r.metric(split, metric) for _, r in seeds], split,
                      INTERVAL_OF.get(metric), opts, METRICS[metric][1], False,
                      ("value", metric, split, tuple(sorted(r.run_id for _, r in seeds))))


def gain_summary(pairs: list[tuple[RunRecord, RunRecord]], split: str, metric: str, opts: StatsOptions,
                 test: bool | None = None) -> Summary | None:
    """The gain of each run over its own baseline, paired by seed, with its interval; ``test`` (the default on
    the test split): a p-value, and a place in a family of tests."""
    test = split == "test" if test is None else test
    seeds = sorted((s, (r, b)) for s, (r, b) in {r.seed: (r, b) for r, b in pairs if r.seed is not None}.items()
                   if r.metric(split, metric) is not None and b.metric(split, metric) is not None)
    if not seeds:
        return None
    gains = [r.metric(split, metric) - b.metric(split, metric) for _, (r, b) in seeds]
    key = ("gain", metric, split, tuple(sorted(f"{r.run_id}-{b.run_id}" for _, (r, b) in seeds)))
    return over_seeds(seeds, gains, split, INTERVAL_OF.get(metric), opts, gain_bounds(metric), test, key)


def tested(s: Summary | None, test: bool = True) -> Summary | None:
    """The cell, in a family of tests when ``test`` and it has a p-value (the correction adjusts it)."""
    return replace(s, tested=test and s.p is not None) if s is not None else None


def paired(runs: list[RunRecord], by_id: dict[str, RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    """(run, its finished baseline) for each run that has one."""
    return [(r, b) for r in runs if (b := finished_baseline(r, by_id)) is not None]


def interval_note(table) -> str | None:
    """What a table's intervals cover, counted over its cells (train rows apart: they describe training, and no
    run stores per-image predictions on train), and why a cell covers the seeds only, by reason."""
    cells = [v for row in table.rows for v in row if isinstance(v, Summary) and v.has_interval]
    if not cells:
        return None
    train = [v for v in cells if v.fallback == TRAIN]
    cells = [v for v in cells if v.fallback != TRAIN]
    crossed = sum(v.method == SEEDS_IMAGES for v in cells)
    variance = sum(v.method in OVER_IMAGES and v.method != SEEDS_IMAGES for v in cells)
    reasons = Counter(v.fallback or "no images' share (the images' variance is zero)" for v in cells
                      if v.method == SEEDS)
    parts = []
    if crossed:
        parts.append(f"{crossed} over seeds and test images (n=seeds×images: crossed variance components, t on "
                     "the seeds' S − 1 df)")
    if variance:
        parts.append(f"{variance} over seeds and test images (each seed's declared variance over the images added "
                     "to the seeds')")
    parts += [f"{k} over seeds only ({why})" for why, k in reasons.most_common()]
    if train:
        parts.append(f"the {len(train)} train-row cells over seeds only (they describe training; no per-image "
                     "predictions on train)")
    floored = Counter(c for v in cells for c in v.floored)
    text = "95% intervals: " + "; ".join(parts) + ". None with < 2 seeds or no spread between them."
    if floored:
        text += " " + " ".join(_FLOORED[c].format(k=k) for c, k in floored.items())
    clipped = sum(v.clipped for v in cells + train)
    if clipped:
        text += (f" {clipped} interval(s) reached past the quantity's range and are cut at it (accuracy [0, 1], a "
                 "gain [−1, 1]): the data cannot narrow them further.")
    return text


_FLOORED = {
    "seeds": "In {k} cell(s) the seeds' variance component came out below zero (MS_seed < MS_residual: the seeds agree "
             "more than their per-image noise allows) and is set to zero: their interval rests on the residual "
             "instead, never narrower.",
    "images": "In {k} cell(s) the images' variance component came out below zero (the images differ no more than "
              "noise) and is set to zero.",
}
