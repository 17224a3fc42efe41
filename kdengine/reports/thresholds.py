"""Sensitivity and specificity at another threshold rule, chosen when the tables are built.

A run chooses each class's threshold on its val split by Youden's J and reads sensitivity and specificity there
(``kdengine.training.metrics``). A screening paper often states a target instead: the highest threshold whose val
sensitivity reaches 0.9, say. Every finished run keeps its val and test probabilities (predictions.npz), so the
rule is a reading, not a training setting: ``--threshold sensitivity=0.9`` chooses the thresholds again on each
run's val probabilities with the run's own code (``choose_thresholds``, ``ranking_metrics``) and reads val and
test there. Nothing is retrained and nothing in the store changes; the intervals follow (the val images' share of
a test sensitivity is drawn again under the same rule: ``reports.ranking.threshold_influence``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace

from ..errors import UsageError
from ..metric_names import THRESHOLD_METRICS, YOUDEN
from ..store.records import RunRecord

THRESHOLD_RULES = (YOUDEN, "sensitivity=0.8", "sensitivity=0.9", "sensitivity=0.95")  # kdtui's t cycles these
READ = ("sensitivity", "specificity", "sensitivity_per_class", "specificity_per_class", "thresholds")
SPLITS = ("val", "test")
EXAMPLE = "youden, or sensitivity=0.9 (the highest threshold whose val sensitivity reaches 0.9)"


def parse_rule(text: str | None) -> str:
    """``youden`` or ``sensitivity=X`` with 0 < X <= 1, spelled canonically; "" or None: as each run chose."""
    text = (text or "").strip().lower().replace(" ", "")
    if text in ("", YOUDEN):
        return text
    key, _, value = text.partition("=")
    try:
        target = float(value)
    except ValueError:
        target = math.nan
    if key != "sensitivity" or not 0 < target <= 1:
        raise UsageError(f"--threshold must be {EXAMPLE}; got '{text}'", field="threshold")
    return f"sensitivity={target!r}"  # the target as given: 0.9999999 is not 1


def stored_rule(r: RunRecord) -> str:
    return ((r.metrics or {}).get("task") or {}).get("threshold_rule") or YOUDEN


def at_rule(records: list[RunRecord], rule: str) -> tuple[list[RunRecord], list[str]]:
    """The records with val and test sensitivity and specificity read at ``rule``; a run whose rule it already is
    stays as it is. A run without stored val and test probabilities cannot be read again: its sensitivity and
    specificity are left out (None), never shown at another rule than the table says; their ids are returned."""
    from ..training.metrics import choose_thresholds, ranking_metrics  # scikit-learn: only where a rule is read
    from .intervals import _probabilities  # predictions.npz, as the intervals read it

    out, unread = [], []
    for r in records:
        if not r.finished or not r.metrics or "task" not in r.metrics or stored_rule(r) == rule \
                or not any("sensitivity" in (r.metrics.get(s) or {}) for s in SPLITS):
            out.append(r)
            continue
        p = _probabilities(r)
        metrics = copy.deepcopy(r.metrics)
        metrics["task"]["threshold_rule"] = rule
        if p is None or any(p.get(s, {}).get("probs") is None for s in SPLITS):
            unread.append(r.run_id)
            for s in SPLITS:
                for key in READ:
                    (metrics.get(s) or {}).pop(key, None)
            out.append(replace(r, metrics=metrics))
            continue
        names = list(metrics.get("class_names") or [])
        thresholds = choose_thresholds(p["val"]["label"], p["val"]["probs"], rule)
        for s in SPLITS:
            read = ranking_metrics(p[s]["label"], p[s]["probs"], names, thresholds)
            metrics.setdefault(s, {}).update({key: read[key] for key in READ})
        out.append(replace(r, metrics=metrics))
    return out, unread


def unread_note(rule: str, unread: list[str]) -> str:
    return (f"{len(unread)} run(s) keep no val and test probabilities (trained before predictions.npz held them): "
            f"their sensitivity and specificity cannot be read at {rule} and are left out: "
            + ", ".join(unread[:4]) + (", ..." if len(unread) > 4 else ""))
