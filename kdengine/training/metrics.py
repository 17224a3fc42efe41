"""Classification metrics from labels and probabilities (numpy + scikit-learn, no torch)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_recall_fscore_support


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


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    _, _, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=list(range(num_classes)), zero_division=0)
    return float(np.mean(f))


def agreement(a_probs: np.ndarray, b_probs: np.ndarray) -> float:
    """Top-1 agreement between two models' predictions on the same images."""
    if len(a_probs) == 0:
        return float("nan")
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
