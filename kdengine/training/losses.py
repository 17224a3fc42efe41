"""Hinton's distillation loss, and the teachers that feed it.

    L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(p_t^T || p_s^T)

alpha weights the distillation term (the Hinton and Yuan et al. convention;
torchdistill puts it on the cross-entropy instead). The KL is summed over
classes and averaged over the batch (``batchmean``). The thesis prints the
factor as T^-2; T^2 is meant: it keeps the soft-target gradients on the scale
of the hard-target ones as T grows (Hinton et al., 2015).

``reduction="mean"`` reproduces Yuan et al.'s released code, whose
``nn.KLDivLoss()`` divides by batch x classes, so its distillation weight is
K times smaller on a K-class task.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..runspec import KDConfig
from ..strategy_catalog import loss_of


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(teacher_logits.float() / temperature, dim=1)


def kd_terms(student_logits: torch.Tensor, targets: torch.Tensor, teacher_probs: torch.Tensor,
             alpha: float, temperature: float, reduction: str = "batchmean") -> dict[str, torch.Tensor]:
    """The two weighted terms of the loss; their sum is L. ``teacher_probs`` are already softened."""
    s = student_logits.float()
    ce = F.cross_entropy(s, targets)
    log_ps = F.log_softmax(s / temperature, dim=1)
    # Reduced by hand: PyTorch has announced that kl_div's "mean" will become "batchmean".
    kl_sum = F.kl_div(log_ps, teacher_probs, reduction="sum")
    kl = kl_sum / s.shape[0] if reduction == "batchmean" else kl_sum / s.numel()
    return {"ce": (1.0 - alpha) * ce, "kd": alpha * temperature * temperature * kl}


def kd_loss(student_logits, teacher_logits, targets, alpha: float = 0.9, temperature: float = 4.0,
            reduction: str = "batchmean") -> torch.Tensor:
    terms = kd_terms(student_logits, targets, soft_targets(teacher_logits, temperature), alpha, temperature, reduction)
    return terms["ce"] + terms["kd"]


def ensemble_targets(teacher_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """The average of the teachers' softened outputs."""
    return torch.stack([soft_targets(t, temperature) for t in teacher_logits]).mean(0)


def virtual_teacher_targets(targets: torch.Tensor, num_classes: int, a: float, temperature: float) -> torch.Tensor:
    """Teacher-free KD (tf-reg): a designed teacher with probability ``a`` on the correct class and
    the rest spread uniformly, softened by its own temperature: softmax(log(p_v) / T)."""
    rest = (1.0 - a) / max(1, num_classes - 1)
    p = torch.full((targets.shape[0], num_classes), rest, device=targets.device)
    p.scatter_(1, targets.view(-1, 1), a)
    return F.softmax(torch.log(p) / temperature, dim=1)


# -- the losses, registered by name (the catalogue names each strategy's) ------------------------------------------
class Loss:
    """Turns logits into named, already-weighted loss terms (mdistiller's convention): the step sums them and
    logs each one."""

    def __init__(self, kd: KDConfig | None, num_classes: int) -> None:
        self.kd = kd or KDConfig()
        self.num_classes = num_classes

    def terms(self, logits: torch.Tensor, targets: torch.Tensor,
              teacher_logits: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


LOSSES: dict[str, type[Loss]] = {}


def register_loss(name: str) -> Callable[[type[Loss]], type[Loss]]:
    """Register a loss class under ``name``, where it is defined (timm's ``register_model`` way)."""
    def register(cls: type[Loss]) -> type[Loss]:
        if name in LOSSES:
            raise ValueError(f"loss '{name}' is registered twice")
        LOSSES[name] = cls
        return cls
    return register


@register_loss("ce")
class CrossEntropy(Loss):
    """Every cross-entropy run (teachers, baselines): the model alone."""

    def terms(self, logits, targets, teacher_logits):
        return {"ce": F.cross_entropy(logits.float(), targets)}


@register_loss("hinton")
class Hinton(Loss):
    """One teacher network, Hinton's loss (normal, reverse, defective and tf-self: they differ only in which
    teacher they get, which the run spec decides)."""

    def terms(self, logits, targets, teacher_logits):
        k = self.kd
        return kd_terms(logits, targets, soft_targets(teacher_logits[0], k.temperature), k.alpha, k.temperature,
                        k.reduction)


@register_loss("ensemble")
class Ensemble(Loss):
    """Several trained teachers; their averaged softened outputs teach one student."""

    def terms(self, logits, targets, teacher_logits):
        k = self.kd
        return kd_terms(logits, targets, ensemble_targets(teacher_logits, k.temperature), k.alpha, k.temperature,
                        k.reduction)


@register_loss("tf-reg")
class TeacherFreeReg(Loss):
    """A designed virtual teacher, no teacher network."""

    def terms(self, logits, targets, teacher_logits):
        k = self.kd
        probs = virtual_teacher_targets(targets, self.num_classes, k.tf_a, k.tf_temperature)
        return kd_terms(logits, targets, probs, k.alpha, k.tf_temperature, k.reduction)


def loss_for(spec, num_classes: int) -> Loss:
    """The loss a run trains with, as its strategy (or, for a cross-entropy run, its kind) names it."""
    return LOSSES[loss_of(spec.strategy)](spec.kd, num_classes)
