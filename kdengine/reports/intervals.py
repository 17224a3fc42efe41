"""A table cell from the runs it summarises (no torch): a metric over seeds, or a gain over each run's own
baseline paired by seed, with the interval the options ask for (:mod:`.stats`).

**How a metric's interval takes in the test images is declared once per metric** (:func:`register_interval`, the
extension point every table uses):

- :data:`MEAN`: the metric is a mean over images of a per-image score (accuracy: correctness); the cell lines the
  runs up image by image (the same rows of the decoded cache, checked), student against baseline within a seed,
  and takes the crossed seeds x images interval (:func:`~.stats.two_way`);
- :data:`VARIANCE`: the metric is not a mean over images (AUROC, average precision, sensitivity, specificity), but
  each image's influence on it is known (:mod:`.ranking`: DeLong's structural components for AUROC, the
  jackknife's for AP, a proportion's for sensitivity and specificity): their products over the images are the
  test set's variance of each seed's value (DeLong's, for AUROC; of a gain the paired one) and its covariance
  between seeds, and the cell takes the same crossed interval from them (:func:`~.stats.influence_two_way`:
  Obuchowski & Rockette's, seeds as readers). AUROC is one ``register_interval("auroc", OverImages(VARIANCE,
  influence=...))``.

Where the images cannot be taken in (``--interval seeds``, the train split, a metric that declares neither, runs
without per-image predictions, images that do not line up) the cell covers the seeds alone, and its ``fallback``
says which of these it was; the table's note counts them by reason.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..store.records import RunRecord, finished_baseline
from ..store.runstore import PREDICTIONS, read_predictions
from .stats import OVER_IMAGES, SEEDS, SEEDS_IMAGES, Summary, influence_two_way, summarize, two_way
from .table_model import METRICS, RANKING, gain_bounds

MEAN, VARIANCE = "mean over images", "each image's influence (a variance over images)"

# why a cell covers the seeds only (the note counts them by these)
ASKED = "--interval seeds"
TRAIN = "train split (no per-image predictions on train)"
NOT_DECLARED = "not a mean over test images (and no per-image influence declared)"
MISSING = "runs without per-image predictions: predictions.npz, trained before they were stored"
MISALIGNED = "the runs' test images do not line up (other images or order)"


@dataclass(frozen=True)
class OverImages:
    """How a metric's interval takes in the test images (see the module's note)."""
    kind: str  # MEAN or VARIANCE
    # MEAN: (run, split) -> (image ids, per-image scores), or None where the run has none
    scores: Callable | None = None
    # VARIANCE: (run, split) -> (image ids, each image's influence on the run's value: see .ranking), or None
    influence: Callable | None = None
    missing: str = MISSING  # what a run without scores lacks, in the note's words

    @property
    def per_image(self) -> Callable:
        return self.scores if self.kind == MEAN else self.influence


INTERVAL_OF: dict[str, OverImages] = {}


def register_interval(metric: str, how: OverImages) -> OverImages:
    """Declare how ``metric``'s interval takes in the test images (one entry per metric)."""
    if how.kind not in (MEAN, VARIANCE) or how.per_image is None or (how.scores is None) == (how.influence is None):
        raise ValueError(f"{metric}: a {MEAN} interval needs scores (alone), a {VARIANCE} one an influence (alone)")
    INTERVAL_OF[metric] = how
    return how


def right(pred, label):
    """Per image, how right a prediction is, as floats whose mean over the images is the split's accuracy: 1 or 0
    for a class; for a multi-label task (rows of 0/1 per finding, -1 where the label is not known) the share of the
    image's known labels predicted right, weighted by its number of known labels over the split's mean (the
    reported accuracy is the share of *all* known labels predicted right; with every label known, or as many on
    each image, the weight is 1). A label not known (-1) never counts, right or wrong."""
    import numpy as np  # numpy: only where a table is built

    pred, label = np.asarray(pred), np.asarray(label)
    if label.ndim == 1:
        return (pred == label).astype(float)
    known = label >= 0
    counts = known.sum(1)
    per_image = counts.mean() if len(counts) else 0.0
    if not per_image:
        return np.zeros(len(label))
    return ((pred == label) & known).sum(1) / per_image


def correctness(r: RunRecord, split: str):
    """(cache rows, per-image correctness as floats: :func:`right`) of a run on a split, or None without
    predictions."""
    p = r.predictions(split)
    return None if p is None else (p["row"], right(p["pred"], p["label"]))


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
            return None if e is None else (np.arange(len(e["pred"])), right(e["pred"], e["label"]))
        if column == "clean":
            return a["row"], right(a["clean"], a["label"])
        cells = a["cells"] if column == "under shift" else {column: a["cells"].get(column, {})}
        preds = [p for levels in cells.values() for p in levels.values()]
        return (a["row"], np.mean([right(p, a["label"]) for p in preds], axis=0)) if preds else None
    return scores


PROBS_MISSING = "runs without per-image probabilities: predictions.npz, trained before they were stored"
_INFLUENCE: dict[tuple, object] = {}  # (run folder, predictions.npz's mtime and size, split, metric) -> its influence


def _probabilities(r: RunRecord) -> dict | None:
    """{split: {row, label, probs}}: a simulation's in memory, else predictions.npz's (the store's record keeps no
    probabilities: a sweep's hundreds of runs stay small); None without them."""
    if r.predictions("test") is None:
        return None
    if all((r.predictions(s) or {}).get("probs") is not None for s in ("val", "test")):
        return {s: r.predictions(s) for s in ("val", "test")}
    return read_predictions(Path(r.run_dir) / PREDICTIONS, ("row", "label", "probs")) if r.run_dir else None


def ranking_influence(metric: str) -> Callable:
    """(ids, each test image's influence on a run's ranking metric: :mod:`.ranking`), as a VARIANCE declaration
    reads it, once per run file (a baseline serves every teacher's gain). Sensitivity and specificity on test also
    carry the val images' share, through the threshold they chose (:func:`~.ranking.threshold_influence`): its
    bootstrap draws follow the test images, with ids that name the val images they were drawn from, so runs on
    other val images do not line up."""
    def influence(r: RunRecord, split: str):
        from . import ranking  # numpy and scipy: only where a table of a ranking metric is built

        stamp = None
        if r.run_dir is not None and r.predictions(split) is not None and "probs" not in r.predictions(split):
            try:
                st = (Path(r.run_dir) / PREDICTIONS).stat()
            except OSError:
                return None
            # the thresholds and their rule too: the same file read at another rule (--threshold) has other
            # influences (a cell once took its interval from the rule built before it)
            task, mine = (r.metrics or {}).get("task") or {}, (r.metrics or {}).get(split) or {}
            thresholds = mine.get("thresholds")
            stamp = (str(r.run_dir), st.st_mtime_ns, st.st_size, split, metric, task.get("threshold_rule"),
                     tuple(thresholds.items()) if isinstance(thresholds, dict) else None)
            if stamp in _INFLUENCE:
                return _INFLUENCE[stamp]
        out = _ranking_influence(ranking, r, split, metric)
        if stamp is not None:
            if len(_INFLUENCE) > 5000:
                _INFLUENCE.clear()
            _INFLUENCE[stamp] = out
        return out
    return influence


def _ranking_influence(ranking, r: RunRecord, split: str, metric: str):
    import numpy as np  # numpy: only where a table is built

    p = _probabilities(r)
    if p is None or split not in p:
        return None
    mine = ((r.metrics or {}).get(split) or {})
    thresholds = list(mine["thresholds"].values()) if isinstance(mine.get("thresholds"), dict) else None
    phi = ranking.influence(metric, p[split]["label"], p[split]["probs"], thresholds)
    if phi is None:
        return None
    ids = np.asarray(p[split]["row"], np.int64)
    if metric in ("sensitivity", "specificity") and split == "test" and "val" in p:
        rule = ((r.metrics or {}).get("task") or {}).get("threshold_rule") or ranking.YOUDEN
        val = p["val"]
        share = ranking.threshold_influence(metric, (val["label"], val["probs"]),
                                            (p[split]["label"], p[split]["probs"]), thresholds, rule)
        if share is not None:
            digest = int.from_bytes(hashlib.blake2b(np.asarray(val["row"], np.int64).tobytes(),
                                                    digest_size=5).digest(), "big")
            ids = np.r_[ids, -(digest * len(share) + np.arange(1, len(share) + 1))]
            phi = np.r_[phi, share]
    return ids, phi


register_interval("accuracy", OverImages(MEAN, scores=correctness))
register_interval("shift_mean", OverImages(MEAN, scores=shift_scores("under shift"), missing=SHIFT_MISSING))
for _metric in RANKING:
    register_interval(_metric, OverImages(VARIANCE, influence=ranking_influence(_metric), missing=PROBS_MISSING))


@dataclass(frozen=True)
class StatsOptions:
    interval: str = SEEDS_IMAGES  # what an interval covers: "seeds+images" or "seeds"
    correction: str = "holm"  # across each family's tested cells: holm, bh, none
    primary: str = ""  # the study's primary family ("" none declared): corrected alone, the rest exploratory


def by_seed(runs: list[RunRecord]) -> dict[int, RunRecord]:
    """One run per seed (the last listed, as the tables always took)."""
    return {r.seed: r for r in runs if r.seed is not None}


def _matrix(units: list[tuple], split: str, how: OverImages):
    """(S x N: per seed the per-image scores (or influences) of its run, minus its baseline's for a gain, and the
    images' ids; or None and why not)."""
    import numpy as np  # numpy: only where a table is built (see stats)

    got = [[how.per_image(r, split) for r in unit] for unit in units]
    if any(c is None for cs in got for c in cs):
        return None, how.missing
    first = np.asarray(got[0][0][0])
    if any(len(c[0]) != len(first) or not np.array_equal(c[0], first) for cs in got for c in cs):
        return None, MISALIGNED
    return np.stack([cs[0][1] - cs[1][1] if len(cs) == 2 else cs[0][1] for cs in got]), first


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
    if not reason:
        d, ids = _matrix([u for _, u in units], split, how)
        if d is None:
            reason = ids
        elif how.kind == MEAN:
            s = two_way(d, values, bounds=bounds, seeds=seeds, test=test)
        else:  # ids below zero: not test images (the val images' bootstrap draws of a threshold metric)
            s = influence_two_way(d, values, bounds=bounds, seeds=seeds, test=test, images=int((ids >= 0).sum()))
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
        parts.append(f"{variance} over seeds and test images (n=seeds×images: the same crossed components, from each "
                     "image's influence on the metric: DeLong's for AUROC, the jackknife's for average precision, a "
                     "proportion's for sensitivity and specificity, with the val images' share through the threshold "
                     "they chose, by a paired bootstrap; t on the seeds' S − 1 df)")
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
