"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022).

Hinton's KL splits into a target-class term and a non-target-class term (Eq. 1 of the paper: KD = TCKD +
(1 - p_t^T) NCKD); DKD weights them apart:

    L = CE + w(epoch) * (alpha * TCKD + beta * NCKD)

TCKD is the KL between the teacher's and the student's binary (target, every other class) probabilities, NCKD the
KL between their distributions over the non-target classes alone, both at temperature T, each multiplied by T^2
and averaged over the batch, as the released code (mdistiller) does. The non-target distribution is computed
exactly over the K - 1 other classes (the released code subtracts 1000 from the target's logit instead: the same
numbers to float precision). w rises linearly over the first ``kd.dkd_warmup`` epochs (min(epoch / warmup, 1), with
the first epoch 1, as the released code); the paper's CIFAR-100 defaults: alpha 1, beta 8, T 4, 20 epochs. On a
binary task NCKD is zero (one non-target class): DKD is TCKD alone there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, register_method, wide


def dkd_parts(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), unweighted, each T^2 times its batch-mean KL."""
    s, t = wide(student_logits), wide(teacher_logits)
    b, k = s.shape
    target = F.one_hot(targets, k).bool()
    ps, pt = F.softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)
    bs = torch.stack([ps[target], ps.masked_fill(target, 0).sum(1)], dim=1)  # (target, all non-target)
    bt = torch.stack([pt[target], pt.masked_fill(target, 0).sum(1)], dim=1)
    scale = temperature * temperature / b
    tckd = F.kl_div(torch.log(bs), bt, reduction="sum") * scale
    other = ~target
    if k < 3:  # one non-target class: its distribution is a certainty, the KL is zero
        return tckd, torch.zeros_like(tckd)
    s_other, t_other = (s[other].view(b, k - 1), t[other].view(b, k - 1))
    nckd = F.kl_div(F.log_softmax(s_other / temperature, dim=1), F.softmax(t_other / temperature, dim=1),
                    reduction="sum") * scale
    return tckd, nckd


@register_method
class DKD(Method):
    name = "dkd"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        # the warm-up factor of this epoch, a device tensor: a captured CUDA graph reads it where it lies
        self.register_buffer("warm", torch.ones((), device=ctx.device), persistent=False)

    def on_epoch_start(self, epoch: int) -> None:
        w = self.ctx.kd.dkd_warmup
        self.warm.fill_(min(epoch / w, 1.0) if w > 0 else 1.0)

    def distill(self, student, teacher, targets, index, i=0):
        k = self.ctx.kd
        tckd, nckd = dkd_parts(student.logits, teacher.logits, targets, self.ctx.temperature)
        return {"tckd": self.warm * (k.dkd_alpha * tckd), "nckd": self.warm * (k.dkd_beta * nckd)}
