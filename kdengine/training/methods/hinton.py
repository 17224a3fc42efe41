"""Hinton's distillation loss (Hinton, Vinyals & Dean 2015), and the softened targets the strategies feed it.

    L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(p_t^T || p_s^T)

alpha weights the distillation term (the Hinton and Yuan et al. convention; torchdistill puts it on the
cross-entropy instead). The KL is summed over classes and averaged over the batch (``batchmean``). The thesis
prints the factor as T^-2; T^2 is meant: it keeps the soft-target gradients on the scale of the hard-target ones
as T grows (Hinton et al., 2015).

``reduction="mean"`` reproduces Yuan et al.'s released code, whose ``nn.KLDivLoss()`` divides by batch x classes,
so its distillation weight is K times smaller on a K-class task. Several teachers (the ensemble strategy): their
softened outputs are averaged into one target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, Outputs, register_method, wide


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(wide(teacher_logits) / temperature, dim=1)


def kl_divergence(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float,
                  reduction: str = "batchmean") -> torch.Tensor:
    """KL(p_t^T || p_s^T), summed over classes and averaged over the batch (or over batch x classes: ``mean``);
    ``teacher_probs`` are already softened."""
    s = wide(student_logits)
    log_ps = F.log_softmax(s / temperature, dim=1)
    # Reduced by hand: PyTorch has announced that kl_div's "mean" will become "batchmean".
    kl_sum = F.kl_div(log_ps, teacher_probs, reduction="sum")
    return kl_sum / s.shape[0] if reduction == "batchmean" else kl_sum / s.numel()


def kd_terms(student_logits: torch.Tensor, targets: torch.Tensor, teacher_probs: torch.Tensor,
             alpha: float, temperature: float, reduction: str = "batchmean") -> dict[str, torch.Tensor]:
    """The two weighted terms of the loss; their sum is L. ``teacher_probs`` are already softened."""
    ce = F.cross_entropy(wide(student_logits), targets)
    kl = kl_divergence(student_logits, teacher_probs, temperature, reduction)
    return {"ce": (1.0 - alpha) * ce, "kd": alpha * temperature * temperature * kl}


def kd_loss(student_logits, teacher_logits, targets, alpha: float = 0.9, temperature: float = 4.0,
            reduction: str = "batchmean") -> torch.Tensor:
    terms = kd_terms(student_logits, targets, soft_targets(teacher_logits, temperature), alpha, temperature, reduction)
    return terms["ce"] + terms["kd"]


def ensemble_targets(teacher_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """The average of the teachers' softened outputs."""
    return torch.stack([soft_targets(t, temperature) for t in teacher_logits]).mean(0)


def virtual_teacher_logits(targets: torch.Tensor, num_classes: int, a: float) -> torch.Tensor:
    """Teacher-free KD (tf-reg, Yuan et al. 2020): a designed teacher with probability ``a`` on the correct class
    and the rest spread uniformly, as logits log(p_v): softened by a temperature T, softmax(log(p_v) / T)."""
    rest = (1.0 - a) / max(1, num_classes - 1)
    p = torch.full((targets.shape[0], num_classes), rest, device=targets.device)
    p.scatter_(1, targets.view(-1, 1), a)
    return torch.log(p)


def virtual_teacher_targets(targets: torch.Tensor, num_classes: int, a: float, temperature: float) -> torch.Tensor:
    """The virtual teacher's softened distribution: softmax(log(p_v) / T)."""
    return F.softmax(virtual_teacher_logits(targets, num_classes, a) / temperature, dim=1)


@register_method
class Hinton(Method):
    """Every strategy's original loss: one teacher (normal, reverse, defective, tf-self), several (ensemble:
    the averaged softened outputs), or tf-reg's virtual teacher (its logits log(p_v) at its own temperature)."""

    name = "hinton"

    @property
    def ce_weight(self) -> float:
        return 1.0 - self.ctx.kd.alpha

    def terms(self, student: Outputs, teachers: list[Outputs], targets, index):
        """The task softens (a softmax at T; a sigmoid per finding at T for a multi-label task) and measures the
        divergence (the KL over the classes; the binary KL summed over the findings)."""
        k, T, task = self.ctx.kd, self.ctx.temperature, self.ctx.task
        soft = [task.soften(t.logits, T) for t in teachers]
        target = soft[0] if len(soft) == 1 else torch.stack(soft).mean(0)
        return {"kd": k.alpha * T * T * task.divergence(student.logits, target, T, k.reduction)}
