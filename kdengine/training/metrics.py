"""Classification metrics from labels and probabilities (numpy + scikit-learn, no torch).

Beside accuracy, macro-F1, Cohen's kappa and ECE, the ones screening and multi-label work reports: AUROC and average
precision per class (one-vs-rest for a multi-class task; the positive class of a binary one; each finding of a
multi-label one) and their macro mean, and sensitivity and specificity at a threshold chosen on val (Youden's J, or
the lowest threshold that reaches a stated sensitivity), applied unchanged to test. Every number is scikit-learn's
(``roc_auc_score``, ``average_precision_score``, ``roc_curve``); a class whose split holds only one kind of label has
no AUROC (None), and the macro mean is over the classes that have one.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (average_precision_score, cohen_kappa_score, confusion_matrix,
                             precision_recall_fscore_support, roc_auc_score, roc_curve)

from ..metric_names import YOUDEN


def calibration_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> list[dict]:
    """Equal-width confidence bins: each with its range, count, mean confidence and accuracy (the reliability
    diagram's data; ECE is their count-weighted gap)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        out.append({"lo": float(lo), "hi": float(hi), "count": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else None,
                    "accuracy": float(correct[m].mean()) if m.any() else None})
    return out


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b |acc_b - conf_b| * n_b / N."""
    if len(y_true) == 0:
        return float("nan")
    n = len(y_true)
    return float(sum(abs(b["accuracy"] - b["confidence"]) * b["count"] / n
                     for b in calibration_bins(probs, y_true, bins) if b["count"]))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                           loss: float | None = None) -> dict:
    """Accuracy, macro-F1, Cohen's kappa, ECE, the confusion matrix and the per-class report."""
    y_true = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64)
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    kappa = cohen_kappa_score(y_true, y_pred, labels=labels) if len(set(y_true) | set(y_pred)) > 1 else 0.0
    out = {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(np.mean(f)),
        "kappa": float(0.0 if np.isnan(kappa) else kappa),
        "ece": expected_calibration_error(probs, y_true),
        "calibration": calibration_bins(probs, y_true) if len(y_true) else [],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "report": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                   for i, name in enumerate(class_names)},
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out


# -- ranking and threshold metrics ----------------------------------------------------------------------------------
def binary_columns(y_true: np.ndarray, probs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class, (0/1 truth, score) over the images whose label is known: a binary task has one column (the
    positive class), a multi-class task one per class (one-vs-rest), a multi-label task one per finding."""
    probs = np.asarray(probs, np.float64)
    if y_true.ndim == 2:  # multi-label: -1 is not known
        return [((y_true[:, k] == 1).astype(int)[y_true[:, k] >= 0], probs[y_true[:, k] >= 0, k])
                for k in range(y_true.shape[1])]
    if probs.shape[1] == 2:
        return [((y_true == 1).astype(int), probs[:, 1])]
    return [((y_true == k).astype(int), probs[:, k]) for k in range(probs.shape[1])]


def _both(truth: np.ndarray) -> bool:
    return 0 < truth.sum() < len(truth)


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray, rule: str = YOUDEN) -> list[float | None]:
    """Per column (``binary_columns``), the threshold a split's scores suggest: Youden's J (the point of the ROC
    curve furthest above chance), or ``sensitivity=0.9``: the highest threshold whose sensitivity reaches 0.9."""
    out: list[float | None] = []
    for truth, score in binary_columns(y_true, probs):
        if not _both(truth):
            out.append(None)
            continue
        fpr, tpr, thr = roc_curve(truth, score, drop_intermediate=False)
        if rule == YOUDEN:
            i = int(np.argmax(tpr - fpr))
        else:
            target = float(rule.split("=", 1)[1])
            i = int(np.flatnonzero(tpr >= target)[0])
        out.append(float(min(thr[i], 1.0)))
    return out


def ranking_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                    thresholds: list[float | None] | None = None) -> dict:
    """AUROC and average precision per class and their macro means; with ``thresholds`` (chosen on val), the
    sensitivity and specificity each gives on these images, and their means."""
    cols = binary_columns(np.asarray(y_true), probs)
    names = [class_names[1]] if len(cols) == 1 and len(class_names) == 2 and np.asarray(y_true).ndim == 1 \
        else list(class_names)
    auroc = [float(roc_auc_score(t, p)) if _both(t) else None for t, p in cols]
    ap = [float(average_precision_score(t, p)) if t.sum() else None for t, p in cols]
    out = {"auroc": _mean(auroc), "ap": _mean(ap), "auroc_per_class": dict(zip(names, auroc)),
           "ap_per_class": dict(zip(names, ap))}
    if thresholds is not None:
        sens, spec = [], []
        for (t, p), thr in zip(cols, thresholds):
            if thr is None or not len(t):
                sens.append(None)
                spec.append(None)
                continue
            pred = p >= thr
            sens.append(float(pred[t == 1].mean()) if (t == 1).any() else None)
            spec.append(float((~pred[t == 0]).mean()) if (t == 0).any() else None)
        out.update({"sensitivity": _mean(sens), "specificity": _mean(spec),
                    "sensitivity_per_class": dict(zip(names, sens)), "specificity_per_class": dict(zip(names, spec)),
                    "thresholds": dict(zip(names, thresholds))})
    return out


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                       loss: float | None = None) -> dict:
    """A multi-label split at probability 0.5: the share of known labels predicted right ("accuracy"), the mean
    over the findings of F1 and Cohen's kappa, ECE over every known label as a binary prediction, and a 2 x 2
    confusion per finding (true x predicted); the ranking metrics come from :func:`ranking_metrics`."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, np.float64)
    known = y_true >= 0
    pred = (probs >= 0.5).astype(int)
    per, confusion, f1s, kappas = {}, {}, [], []
    for k, name in enumerate(class_names):
        m = known[:, k]
        t, p = (y_true[m, k] == 1).astype(int), pred[m, k]
        cm = confusion_matrix(t, p, labels=[0, 1]) if m.any() else np.zeros((2, 2), int)
        confusion[name] = cm.tolist()
        pr, rc, f, _ = precision_recall_fscore_support(t, p, labels=[1], zero_division=0) if m.any() else ([0], [0],
                                                                                                          [0], [0])
        kappa = cohen_kappa_score(t, p, labels=[0, 1]) if len(set(t) | set(p)) > 1 else 0.0
        f1s.append(float(f[0]))
        kappas.append(float(0.0 if np.isnan(kappa) else kappa))
        per[name] = {"precision": float(pr[0]), "recall": float(rc[0]), "f1": float(f[0]), "support": int(t.sum()),
                     "known": int(m.sum())}
    conf_binary = np.stack([1 - probs[known], probs[known]], 1)
    out = {
        "n": int(len(y_true)),
        "accuracy": float((pred[known] == y_true[known]).mean()) if known.any() else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "kappa": float(np.mean(kappas)) if kappas else float("nan"),
        "ece": expected_calibration_error(conf_binary, y_true[known].astype(np.int64)),
        "confusion": confusion,
        "report": per,
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out


def split_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str], loss: float | None = None,
                  thresholds: list[float | None] | None = None) -> dict:
    """Every metric of one split, for the task the labels say (a 2-D label array: multi-label)."""
    y_true = np.asarray(y_true)
    base = multilabel_metrics(y_true, probs, class_names, loss) if y_true.ndim == 2 else \
        classification_metrics(y_true, probs, class_names, loss)
    if len(y_true):
        base.update(ranking_metrics(y_true, probs, class_names, thresholds))
    return base


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    _, _, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=list(range(num_classes)), zero_division=0)
    return float(np.mean(f))


def agreement(a_probs: np.ndarray, b_probs: np.ndarray, multilabel: bool = False) -> float:
    """Top-1 agreement between two models' predictions on the same images (multi-label: the share of findings on
    which they agree at 0.5)."""
    if len(a_probs) == 0:
        return float("nan")
    if multilabel:
        return float(((np.asarray(a_probs) >= 0.5) == (np.asarray(b_probs) >= 0.5)).mean())
    return float((np.asarray(a_probs).argmax(1) == np.asarray(b_probs).argmax(1)).mean())


def study_level(probs: np.ndarray, labels: np.ndarray, study_keys: list[str], class_names: list[str]) -> dict:
    """MURA's own scoring: a study's probability is the mean over its images; accuracy and kappa over studies."""
    studies: dict[str, list[int]] = {}
    for i, key in enumerate(study_keys):
        studies.setdefault(key, []).append(i)
    study_probs = np.stack([probs[idx].mean(0) for idx in studies.values()])
    study_labels = np.asarray([labels[idx[0]] for idx in studies.values()])
    m = classification_metrics(study_labels, study_probs, class_names)
    return {"n": len(studies), "accuracy": m["accuracy"], "kappa": m["kappa"], "macro_f1": m["macro_f1"],
            "confusion": m["confusion"]}
