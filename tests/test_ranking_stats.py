"""Issue 34, item 3: each test image's influence on AUROC, average precision, sensitivity and specificity
(kdengine/reports/ranking.py), against scikit-learn for the point estimates, a closed form worked by hand, brute force
and the bootstrap for the variances; and the crossed interval made from influences, against the one made from a
mean's per-image scores (they must be the same)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from kdengine.reports import ranking as R
from kdengine.reports.stats import influence_two_way, two_way
from kdengine.training.metrics import binary_columns, choose_thresholds, ranking_metrics
from tests import stats_sim as sim


def _binormal(rng, n=400, prevalence=0.35, shift=1.0, ties=False):
    y = rng.random(n) < prevalence
    s = rng.normal(0, 1, n) + shift * y
    return y, np.round(s, 1) if ties else s


def _bootstrap(rng, n, statistic, draws):
    """The bootstrap variance of ``statistic(indices)`` over ``draws`` resamples of n images."""
    return float(np.var([statistic(rng.integers(0, n, n)) for _ in range(draws)], ddof=1))


def _auc(y, s):
    """The Mann-Whitney U over m n (midranks: ties count half), the textbook AUROC; scikit-learn's is 30 times slower
    in a bootstrap loop (checked equal below)."""
    y = np.asarray(y, bool)
    m, n = y.sum(), (~y).sum()
    return (rankdata(s)[y].sum() - m * (m + 1) / 2) / (m * n)


def _ap(y, s):
    """Average precision, scikit-learn's to the last bit (checked image by image below) and 15 times faster."""
    return R.average_precision_left_out(y, s)[0]


def _tasks(rng, n=300):
    """(label, probabilities) of a binary, a multi-class and a multi-label task (with unknown labels, -1)."""
    y = rng.integers(0, 2, n)
    p1 = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y)))
    yc = rng.integers(0, 3, n)
    z = rng.normal(0, 1, (n, 3)) + 1.3 * np.eye(3)[yc]
    ill = rng.normal(0, 1, (n, 1))  # findings come together, and an image that looks ill looks it for all of them
    yl = (rng.normal(0, 1, (n, 4)) + 1.5 * ill > 1.2).astype(int)
    zl = rng.normal(0, 1, (n, 4)) + 1.1 * yl + ill
    yl[rng.random((n, 4)) < 0.15] = -1
    return {"binary": (y, np.stack([1 - p1, p1], 1)),
            "multiclass": (yc, np.exp(z) / np.exp(z).sum(1, keepdims=True)),
            "multilabel": (yl, 1 / (1 + np.exp(-zl)))}


# -- AUROC: DeLong ----------------------------------------------------------------------------------------------------
def test_delong_auroc_is_scikit_learns_with_ties():
    rng = np.random.default_rng(0)
    for ties in (False, True):
        y, s = _binormal(rng, ties=ties)
        auc, v10, v01 = R.delong_placements(y, s)
        assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12) and _auc(y, s) == pytest.approx(auc, abs=1e-12)
        assert v10.mean() == pytest.approx(v01.mean(), abs=1e-12)  # both are the AUROC
        assert len(v10) == y.sum() and len(v01) == (~y).sum()


def test_delong_variance_equals_the_closed_form_worked_by_hand():
    """Positives 0.9, 0.6, 0.4 and negatives 0.7, 0.4, 0.2, 0.1 (one tie). V10 = 1, 3/4, 5/8; V01 = 1/3, 5/6, 1,
    1; AUROC 19/24; S10 = (25 + 1 + 16)/576/2 = 7/192, S01 = (121 + 1 + 25 + 25)/576/3 = 43/432;
    S10/3 + S01/4 = 21/1728 + 43/1728 = 1/27."""
    y = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    s = np.array([0.9, 0.6, 0.4, 0.7, 0.4, 0.2, 0.1])
    auc, v10, v01 = R.delong_placements(y, s)
    assert [Fraction(v).limit_denominator(100) for v in v10] == [1, Fraction(3, 4), Fraction(5, 8)]
    assert [Fraction(v).limit_denominator(100) for v in v01] == [Fraction(1, 3), Fraction(5, 6), 1, 1]
    assert auc == pytest.approx(19 / 24, abs=1e-15)
    assert (R.auroc_influence(y, s) ** 2).sum() == pytest.approx(1 / 27, abs=1e-15)


def test_delong_variance_of_one_auroc_and_of_a_paired_difference_match_the_bootstrap():
    """DeLong's variance of one AUROC, and of the difference of two correlated AUROCs on the same images (a student
    and its baseline), against the bootstrap over images (2,000 draws: about 3 % Monte Carlo error)."""
    rng = np.random.default_rng(1)
    n = 400
    y, s = _binormal(rng, n)
    other = 0.7 * s + 0.7 * rng.normal(0, 1, n) + 0.2 * y  # correlated with s, a little less separated
    delong = (R.auroc_influence(y, s) ** 2).sum()
    boot = _bootstrap(rng, n, lambda i: _auc(y[i], s[i]), 2000)
    assert delong == pytest.approx(boot, rel=0.12)
    paired = ((R.auroc_influence(y, s) - R.auroc_influence(y, other)) ** 2).sum()
    boot = _bootstrap(rng, n, lambda i: _auc(y[i], s[i]) - _auc(y[i], other[i]), 2000)
    assert paired == pytest.approx(boot, rel=0.12)
    unpaired = (R.auroc_influence(y, s) ** 2).sum() + (R.auroc_influence(y, other) ** 2).sum()
    assert paired < 0.6 * unpaired  # the pairing counts: the two AUROCs are correlated


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_variance_of_a_macro_auroc_matches_the_bootstrap(kind):
    """The macro mean's variance from the classes' joint DeLong covariance (one-vs-rest, or findings with unknown
    labels left out), against the bootstrap over images of scikit-learn's macro AUROC (the engine's)."""
    rng = np.random.default_rng(2)
    y, p = _tasks(rng, 400)[kind]
    names = [f"c{k}" for k in range(p.shape[1])]
    phi = R.influence("auroc", y, p)
    assert ranking_metrics(y, p, names)["auroc"] == pytest.approx(
        np.mean([_auc(t, s) for t, s in binary_columns(y, p)]), abs=1e-12)
    boot = _bootstrap(rng, len(y), lambda i: np.mean([_auc(t, s) for t, s in binary_columns(y[i], p[i])]), 1500)
    assert (phi ** 2).sum() == pytest.approx(boot, rel=0.15)
    # the classes are correlated (they share their images): their variances alone, summed over K², miss it
    alone = sum((R.auroc_influence(t, s) ** 2).sum() for t, s in binary_columns(y, p)) / p.shape[1] ** 2
    assert abs(alone / boot - 1) > 0.1, (alone, boot)


# -- average precision: the jackknife --------------------------------------------------------------------------------
def test_average_precision_with_each_image_left_out_is_scikit_learns():
    """Every AP_(-i) of the O(n log n) jackknife equals scikit-learn's AP recomputed without image i, ties too."""
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(60):
        n = int(rng.integers(3, 25))
        t = rng.random(n) < rng.uniform(0.15, 0.85)
        if not t.any():
            continue
        s = np.round(rng.random(n), 1)  # ties, often
        ap, left = R.average_precision_left_out(t, s)
        assert ap == pytest.approx(average_precision_score(t, s), abs=1e-12)
        for i in range(n):
            keep = np.arange(n) != i
            if t[keep].any():
                assert left[i] == pytest.approx(average_precision_score(t[keep], s[keep]), abs=1e-12)
                checked += 1
    assert checked > 500


def test_jackknife_variance_of_average_precision_matches_the_bootstrap():
    rng = np.random.default_rng(4)
    y, s = _binormal(rng, 400, prevalence=0.25)
    other = 0.7 * s + 0.7 * rng.normal(0, 1, 400)
    jack = (R.ap_influence(y, s) ** 2).sum()
    assert jack == pytest.approx(_bootstrap(rng, 400, lambda i: _ap(y[i], s[i]), 2000), rel=0.15)
    paired = ((R.ap_influence(y, s) - R.ap_influence(y, other)) ** 2).sum()
    boot = _bootstrap(rng, 400, lambda i: _ap(y[i], s[i]) - _ap(y[i], other[i]), 2000)
    assert paired == pytest.approx(boot, rel=0.15)


# -- sensitivity and specificity -------------------------------------------------------------------------------------
def test_sensitivity_and_specificity_influence_is_a_proportions():
    rng = np.random.default_rng(5)
    y, p = _tasks(rng)["binary"]
    thr = choose_thresholds(y, p)
    m = ranking_metrics(y, p, ["n", "p"], thr)
    called = p[:, 1] >= thr[0]
    for metric, among, hit in (("sensitivity", y == 1, called), ("specificity", y == 0, ~called)):
        x = hit[among]
        assert m[metric] == pytest.approx(x.mean())
        assert (R.influence(metric, y, p, thr) ** 2).sum() == pytest.approx(x.var(ddof=1) / len(x), rel=1e-12)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_the_thresholds_redrawn_on_val_are_the_engines_choice_where_nothing_is_redrawn(kind):
    """With every val image drawn once, the threshold the bootstrap chooses again is the engine's (Youden's J,
    scikit-learn's roc_curve), ties in the scores too."""
    rng = np.random.default_rng(6)
    y, p = _tasks(rng, 200)[kind]
    p = np.round(p, 2)  # ties
    ones = np.ones((1, len(y)))
    for k, ((idx, t, s), engine) in enumerate(zip(R.columns(y, p), choose_thresholds(y, p))):
        assert R.weighted_thresholds(t, s, ones[:, idx])[0] == pytest.approx(engine, abs=0)
    # a draw counts an image as often as it is drawn: the engine's choice on the images repeated so
    draws = R.val_draws(len(y), 5)
    for w in draws:
        again = np.repeat(np.arange(len(y)), w.astype(int))
        for (idx, t, s), engine in zip(R.columns(y, p), choose_thresholds(y[again], p[again])):
            assert R.weighted_thresholds(t, s, w[None, idx])[0] == pytest.approx(engine, abs=0)
    # a stated sensitivity: the highest threshold whose sensitivity on val reaches it
    t, s = R.columns(y, p)[0][1:]
    cut = R.weighted_thresholds(t, s, np.ones((1, len(t))), "sensitivity=0.8")[0]
    assert (s[t == 1] >= cut).mean() >= 0.8
    assert (s[t == 1] > cut).mean() < 0.8  # the next score up would not


def test_the_val_images_share_is_a_paired_bootstrap():
    """The val images' share of a test sensitivity's variance: the same draws for two runs (paired), zero where the
    threshold cannot move, and the draws' variance where it can."""
    rng = np.random.default_rng(7)
    y, p = _tasks(rng, 300)["binary"]
    yv, pv = _tasks(rng, 150)["binary"]
    thr = choose_thresholds(yv, pv)
    share = R.threshold_influence("sensitivity", (yv, pv), (y, p), thr)
    assert len(share) == R.VAL_RESAMPLES and abs(share.sum()) < 1e-9 and (share ** 2).sum() > 0
    assert np.array_equal(R.val_draws(150), R.val_draws(150))  # every run of a cell draws the same val images
    perfect = np.stack([1 - yv, yv], 1).astype(float)  # a val set split perfectly: a threshold at 1.0 on any draw
    flat = R.threshold_influence("sensitivity", (yv, perfect), (y, p), choose_thresholds(yv, perfect))
    assert np.allclose(flat, 0)


# -- the interval made from influences ---------------------------------------------------------------------------------
def test_the_crossed_interval_from_influences_is_two_ways_for_a_mean():
    """A mean over images, declared by its influence (each image's deviation over sqrt(N(N-1))), gives exactly the
    crossed seeds x images interval and components of its per-image scores: the Obuchowski-Rockette variance of
    influence_two_way is two_way's ANOVA estimate."""
    rng = np.random.default_rng(8)
    for seeds, floor in ((3, False), (5, False), (3, True)):
        d = (rng.random((seeds, 120)) < rng.uniform(0.3, 0.7, 120)).astype(float)
        if floor:  # seeds that agree more than their images' noise allows: the seeds' component floored
            d[:, :] = 0
            for s in range(seeds):
                d[s, s * 20:s * 20 + 30 + s] = 1
        rows = d.mean(1)
        phi = (d - rows[:, None]) / np.sqrt(120 * 119)
        a, b = two_way(d, seeds=list(range(seeds)), test=True), influence_two_way(phi, rows, test=True)
        assert (b.lo, b.hi, b.p) == pytest.approx((a.lo, a.hi, a.p), rel=1e-9)
        assert (b.components.seed, b.components.image, b.components.residual) == pytest.approx(
            (a.components.seed, a.components.image, a.components.residual), rel=1e-9, abs=1e-15)
        assert b.floored == a.floored and b.method == "seeds+variance" and b.images == 120
    assert "seeds" in b.floored


def test_columns_are_the_engines():
    for kind, (y, p) in _tasks(np.random.default_rng(9)).items():
        mine, engine = R.columns(y, p), binary_columns(y, p)
        assert len(mine) == len(engine) == (1 if kind == "binary" else p.shape[1])
        for (idx, t, s), (te, se) in zip(mine, engine):
            assert np.array_equal(t, te) and np.array_equal(s, se) and len(idx) == len(te)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_the_simulated_runs_metrics_are_the_engines(kind):
    """tests/stats_sim.ranked computes its runs' metrics plainly (30 times faster); they are scikit-learn's."""
    r = sim.ranked(np.random.default_rng(10), seeds=1, kind=kind, teachers=())[0]
    thr = list(r.metrics["test"]["thresholds"].values())
    p = r.preds
    assert thr == pytest.approx(choose_thresholds(p["val"]["label"], p["val"]["probs"]), abs=0)
    engine = ranking_metrics(p["test"]["label"], p["test"]["probs"], r.metrics["class_names"], thr)
    for metric in ("auroc", "ap", "sensitivity", "specificity"):
        assert r.metrics["test"][metric] == pytest.approx(engine[metric], abs=1e-12), metric
