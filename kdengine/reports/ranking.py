"""Each test image's influence on one run's ranking metric (AUROC, average precision, sensitivity, specificity): the
linearisation the tables' intervals over seeds and test images are made from (numpy and scipy; no torch).

None of these metrics is a mean over images, so the crossed seeds x images interval of a mean (:func:`.stats.two_way`)
cannot take per-image scores from it. What it can take is each image's influence on the metric: a vector ``phi``
over the split's images with ``sum(phi**2)`` the metric's variance over the test set and, for two runs on the same
images, ``sum(phi_a * phi_b)`` their covariance (of a gain, the difference's influence is the difference of the
influences). :func:`.stats.influence_two_way` builds the same crossed variance components from these as
:func:`~.stats.two_way` does from a mean's per-image scores (for a mean the two are identical: tested).

- **AUROC**: DeLong's structural components (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837), computed
  from midranks as Sun & Xu 2014 (IEEE Signal Process. Lett. 21:1389) do: for a positive, the share of negatives
  it outscores (ties half), ``V10``; for a negative, the share of positives that outscore it, ``V01``. Scaled by
  ``1/sqrt(m(m-1))`` and ``1/sqrt(n(n-1))``, ``sum(phi**2)`` is DeLong's ``S10/m + S01/n`` exactly, and the sum of
  products of two runs' is DeLong's covariance of two correlated AUROCs on the same images, so the variance of a
  student's gain over its baseline is DeLong's paired one. The macro mean's influence is the mean of its classes':
  the variance of a mean of AUROCs from their joint DeLong covariance. Where the classes split the images into
  positives and negatives differently (one-vs-rest, findings with unknown labels), each class's components are the
  first-order (Hajek) projection of its two-sample U-statistic on each image, so their products over the images
  estimate the covariance of the classes' AUROCs (the placement values of Hanley & Hajian-Tilaki 1997, Acad.
  Radiol. 4:49, and Pepe 2003, The Statistical Evaluation of Medical Tests, ch. 5; DeLong's own covariance where two
  classes share a partition). Checked against the bootstrap (tests/test_ranking_stats.py).
- **Average precision** has no such closed form: its influence is the jackknife's (Efron & Stein 1981): each image
  left out in turn, ``phi_i = sqrt((n-1)/n) (mean_j AP_(-j) - AP_(-i))``, so ``sum(phi**2)`` is the jackknife
  variance and products the jackknife covariance. Every ``AP_(-i)`` is exact (scikit-learn's step-wise AP with ties
  grouped, checked against it image by image) in O(n log n) from cumulative counts, not n recomputations.
- **Sensitivity** (specificity) at the threshold chosen on val is a mean over the positives (negatives) of being
  called positive (negative): its influence is each one's deviation from that mean over ``sqrt(m(m-1))``, the
  binomial variance of a proportion. The threshold itself is a draw of the val images: a method that takes the val
  images its own way moves its threshold the same way on every seed, which the seeds' spread cannot show (in
  simulation, without it, 15 % of cells missed the truth at 10 seeds). So the val images' share comes too
  (:func:`threshold_influence`): the val images drawn again (a bootstrap, 200 draws, the same for every run: paired),
  the threshold chosen again by the run's rule, the test metric read at it. The choice is an argmax (Youden's J),
  with no influence function to linearise: the bootstrap it is, checked by simulation.

A class enters a macro mean exactly where :func:`kdengine.training.metrics.ranking_metrics` counts it (AUROC: both
labels present; AP: a positive; sensitivity and specificity: a threshold and a positive or a negative), so the
influence is of the number metrics.json holds. A class with a single positive (negative) has no sample variance of
its components: its scale uses ``m(m-1)`` with ``m - 1`` taken as 1, and a lone positive left out leaves its AP as
it was.
"""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np

from ..metric_names import YOUDEN
from ..training.metrics import binary_columns


def columns(label, probs) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per class, (the images it is scored on, as indices into the split; their 0/1 truth; their score): the
    positive class of a binary task, each class one-vs-rest, each finding over the images whose label is known
    (scikit-learn's columns as ``binary_columns`` makes them, with where they sit)."""
    label = np.asarray(label)
    cols = binary_columns(label, probs)
    if label.ndim == 2:
        return [(np.flatnonzero(label[:, k] >= 0), t, s) for k, (t, s) in enumerate(cols)]
    every = np.arange(len(label))
    return [(every, t, s) for t, s in cols]


def _scale(count: int) -> float:
    return 1.0 / math.sqrt(count * max(count - 1, 1))


def delong_placements(truth: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUROC, V10 per positive, V01 per negative) from midranks (Sun & Xu 2014): V10 is the share of negatives a
    positive outscores, V01 the share of positives that outscore a negative, ties counted half."""
    from scipy.stats import rankdata  # scipy: only where a ranking metric's interval is made

    truth = np.asarray(truth).astype(bool)
    score = np.asarray(score, np.float64)
    pos, neg = score[truth], score[~truth]
    m, n = len(pos), len(neg)
    both = rankdata(np.concatenate([pos, neg]))
    v10 = (both[:m] - rankdata(pos)) / n
    v01 = 1.0 - (both[m:] - rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def auroc_influence(truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """DeLong's structural components, centred and scaled: ``sum(phi**2)`` is DeLong's variance of the AUROC."""
    truth = np.asarray(truth).astype(bool)
    auc, v10, v01 = delong_placements(truth, score)
    phi = np.empty(len(truth))
    phi[truth] = (v10 - auc) * _scale(len(v10))
    phi[~truth] = (v01 - auc) * _scale(len(v01))
    return phi


def average_precision_left_out(truth: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray]:
    """(AP, AP with each image left out), exact: AP = (1/m) sum over tied groups g (highest score first) of
    pos_g * TP_g / N_g, TP_g and N_g counted down to g inclusive. Leaving out image j of group h lowers TP (a
    positive) or the negatives (a negative) of every group from h on: prefix sums before h, suffix sums after."""
    truth = np.asarray(truth).astype(bool)
    score = np.asarray(score, np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], truth[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1  # each sorted image's group
    pos = np.add.reduceat(t.astype(np.int64), starts)
    size = np.diff(np.r_[starts, len(s)])
    tp, n_at = np.cumsum(pos), np.cumsum(size)
    m = int(pos.sum())
    a = pos * tp / n_at
    ap = float(a.sum() / m)
    before = np.r_[0.0, np.cumsum(a)[:-1]]  # sum of a_g for g < h

    def after(values: np.ndarray) -> np.ndarray:  # sum of values_g for g > h
        return np.r_[np.cumsum(values[::-1])[::-1][1:], 0.0]

    more = n_at > 1
    lose_pos = np.divide(pos * (tp - 1), n_at - 1, out=np.zeros(len(pos)), where=more)  # b_g: one positive fewer
    lose_neg = np.divide(pos * tp, n_at - 1, out=np.zeros(len(pos)), where=more)  # c_g: one negative fewer
    own_pos = np.divide((pos - 1) * (tp - 1), n_at - 1, out=np.zeros(len(pos)), where=more)
    if m > 1:
        left_pos = (before + own_pos + after(lose_pos)) / (m - 1)
    else:  # the lone positive left out: no AP; it stays as it was
        left_pos = np.full(len(pos), ap)
    left_neg = (before + lose_neg + after(lose_neg)) / m
    left = np.where(t, left_pos[group], left_neg[group])
    out = np.empty(len(s))
    out[order] = left
    return ap, out


def ap_influence(truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The jackknife's: ``sum(phi**2)`` is the jackknife variance of the average precision."""
    _, left = average_precision_left_out(truth, score)
    n = len(left)
    return math.sqrt((n - 1) / n) * (left.mean() - left) if n > 1 else np.zeros(n)


def rate_influence(called: np.ndarray, among: np.ndarray) -> np.ndarray:
    """A proportion over the images ``among`` (sensitivity: the positives called positive): each one's deviation
    from it over sqrt(m(m-1)), zero elsewhere; ``sum(phi**2)`` is the proportion's binomial variance, var/m."""
    phi = np.zeros(len(called))
    x = np.asarray(called, np.float64)[among]
    if len(x):
        phi[among] = (x - x.mean()) * _scale(len(x))
    return phi


# -- the val images' share of sensitivity and specificity: through the threshold they choose -----------------------
VAL_RESAMPLES = 200  # bootstrap draws of the val images (the variance's relative error about sqrt(2/200) = 10 %)


@lru_cache(maxsize=4)
def val_draws(images: int, draws: int = VAL_RESAMPLES) -> np.ndarray:
    """How often each val image is drawn in each bootstrap draw (draws x images): the same for every run with as
    many val images, so that the draws pair the runs of a cell (seeds, student and baseline) image by image."""
    rng = np.random.default_rng([34, images])
    out = rng.multinomial(images, np.full(images, 1.0 / images), size=draws).astype(np.float64)
    out.flags.writeable = False
    return out


def weighted_thresholds(truth: np.ndarray, score: np.ndarray, weights: np.ndarray,
                        rule: str = YOUDEN) -> np.ndarray:
    """Per row of ``weights`` (how often each image counts), the threshold the engine's rule picks
    (:func:`kdengine.training.metrics.choose_thresholds`): Youden's J, the first maximum from the highest score down
    (none called positive counts as J = 0, at 1.0), or ``sensitivity=x``: the highest threshold whose sensitivity
    reaches x. NaN where a row has no positive or no negative. With every weight 1 it is the engine's choice."""
    truth = np.asarray(truth).astype(bool)
    score = np.asarray(score, np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, t, w = score[order], truth[order], weights[:, order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # each tied group's last image: one ROC point per score
    every = np.cumsum(w, axis=1)
    positives = np.cumsum(w[:, t], axis=1)  # the positives alone: few, one pass over them
    upto = np.cumsum(t)[ends]  # positives down to each point
    tp = np.where(upto > 0, positives[:, np.maximum(upto - 1, 0)] if t.any() else 0.0, 0.0)
    fp = every[:, ends] - tp
    p_all, n_all = tp[:, -1:], fp[:, -1:]
    cut = np.minimum(s[ends], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == YOUDEN:  # the first maximum; none called positive (J = 0, at 1.0) comes first
            j = tp / p_all - fp / n_all
            pick = np.argmax(j, axis=1)
            best = j[np.arange(len(j)), pick]
            out = np.where(best > 0, cut[pick], 1.0)
        else:
            reach = tp / p_all >= float(rule.split("=", 1)[1])
            out = cut[np.argmax(reach, axis=1)]
    out[(p_all[:, 0] == 0) | (n_all[:, 0] == 0)] = np.nan
    return out


def threshold_influence(metric: str, val: tuple, test: tuple, thresholds: list[float | None],
                        rule: str = YOUDEN, draws: int = VAL_RESAMPLES) -> np.ndarray | None:
    """The val images' share of the variance of a run's test sensitivity (specificity), through the threshold they
    choose: the val images drawn again (:func:`val_draws`, the same draws for every run: paired), the threshold
    chosen again on each draw, the test metric read at it; per draw its deviation from the draws' mean over
    sqrt(draws - 1), so that the sum of squares is the bootstrap variance and the sum of two runs' products their
    covariance. ``val`` and ``test``: (labels, probabilities). None where no class has the metric."""
    per_class = []
    redrawn = _redrawn_thresholds(np.asarray(val[0]), np.asarray(val[1], np.float64), rule, draws)
    for k, ((_, tt, ts), cuts) in enumerate(zip(columns(*test), redrawn)):
        wanted = tt == 1 if metric == "sensitivity" else tt == 0
        if thresholds[k] is None or not wanted.any():
            continue
        cuts = np.where(np.isnan(cuts), thresholds[k], cuts)  # a draw without both labels: the run's own threshold
        called = ts[wanted][None, :] >= cuts[:, None]
        per_class.append((called if metric == "sensitivity" else ~called).mean(1))
    if not per_class:
        return None
    values = np.mean(per_class, axis=0)
    return (values - values.mean()) / math.sqrt(max(draws - 1, 1))


_REDRAWN: dict[tuple, list] = {}


def _redrawn_thresholds(label: np.ndarray, probs: np.ndarray, rule: str, draws: int) -> list[np.ndarray]:
    """Per class, the threshold each val draw chooses; once per run's val predictions (by their content: sensitivity
    and specificity share them, and a baseline serves every teacher's gain)."""
    key = (hashlib.blake2b(label.tobytes() + probs.tobytes() + repr(probs.shape).encode(), digest_size=16).digest(),
           rule, draws)
    if key not in _REDRAWN:
        weights = val_draws(len(label), draws)
        if len(_REDRAWN) > 512:
            _REDRAWN.clear()
        _REDRAWN[key] = [weighted_thresholds(t, s, weights[:, _known(label, k)], rule)
                         for k, (_, t, s) in enumerate(columns(label, probs))]
    return _REDRAWN[key]


def _known(label: np.ndarray, k: int):
    """The images a class is scored on (a multi-label finding's known labels; every image otherwise)."""
    label = np.asarray(label)
    return label[:, k] >= 0 if label.ndim == 2 else slice(None)


def influence(metric: str, label, probs, thresholds: list[float | None] | None = None) -> np.ndarray | None:
    """Each image's influence on the run's ``metric`` (a macro mean over its classes, as metrics.json has it), over
    the split's images in their stored order; None where no class has the metric (or, for sensitivity and
    specificity, no threshold was chosen)."""
    label = np.asarray(label)
    probs = np.asarray(probs, np.float64)
    per_class = []
    for k, (idx, truth, score) in enumerate(columns(label, probs)):
        phi = np.zeros(len(label))
        positives, n = int(truth.sum()), len(truth)
        if metric == "auroc" and 0 < positives < n:
            phi[idx] = auroc_influence(truth, score)
        elif metric == "ap" and positives:
            phi[idx] = ap_influence(truth, score)
        elif metric in ("sensitivity", "specificity") and thresholds is not None and thresholds[k] is not None \
                and n:
            called = score >= thresholds[k]
            wanted = truth == 1 if metric == "sensitivity" else truth == 0
            if not wanted.any():
                continue
            phi[idx] = rate_influence(called if metric == "sensitivity" else ~called, wanted)
        else:
            continue
        per_class.append(phi)
    return np.mean(per_class, axis=0) if per_class else None
