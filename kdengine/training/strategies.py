"""The loss side of the strategies: each turns logits into named loss terms.

Like mdistiller, a strategy returns a dict of named, already-weighted terms; the trainer sums
them and logs each one. Which teachers a strategy needs, and everything else about it, is in the
torch-free catalogue (``kdengine/strategy_catalog.py``); ``LOSSES`` has exactly its keys (tested).
Adding a strategy is one catalogue entry, one class here (or a reused one) and a test.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..runspec import KDConfig
from .losses import ensemble_targets, kd_terms, soft_targets, virtual_teacher_targets


class Strategy:
    def __init__(self, kd: KDConfig | None, num_classes: int) -> None:
        self.kd = kd or KDConfig()
        self.num_classes = num_classes

    def terms(self, logits: torch.Tensor, targets: torch.Tensor,
              teacher_logits: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class CrossEntropy(Strategy):
    """baseline (and every teacher): the model alone, cross-entropy only."""

    def terms(self, logits, targets, teacher_logits):
        return {"ce": F.cross_entropy(logits.float(), targets)}


class Hinton(Strategy):
    """normal, reverse, defective and tf-self: one teacher network, Hinton's loss.

    They differ only in which teacher they get (a larger one, a smaller one, one
    stopped early, or a copy of the student), which the run spec decides.
    """

    def terms(self, logits, targets, teacher_logits):
        k = self.kd
        return kd_terms(logits, targets, soft_targets(teacher_logits[0], k.temperature), k.alpha, k.temperature, k.reduction)


class Ensemble(Strategy):
    """Several trained teachers; their averaged softened outputs teach one student."""

    def terms(self, logits, targets, teacher_logits):
        k = self.kd
        return kd_terms(logits, targets, ensemble_targets(teacher_logits, k.temperature), k.alpha, k.temperature, k.reduction)


class TeacherFreeReg(Strategy):
    """tf-reg: a designed virtual teacher, no teacher network."""

    def terms(self, logits, targets, teacher_logits):
        k = self.kd
        probs = virtual_teacher_targets(targets, self.num_classes, k.tf_a, k.tf_temperature)
        return kd_terms(logits, targets, probs, k.alpha, k.tf_temperature, k.reduction)


LOSSES: dict[str, type[Strategy]] = {
    "baseline": CrossEntropy,
    "normal": Hinton,
    "reverse": Hinton,
    "defective": Hinton,
    "tf-self": Hinton,
    "ensemble": Ensemble,
    "tf-reg": TeacherFreeReg,
}


def strategy_for(spec, num_classes: int) -> Strategy:
    """The loss of a run: cross-entropy for every cross-entropy run (teachers, baselines), else its strategy's."""
    return LOSSES[spec.strategy or "baseline"](spec.kd, num_classes)
