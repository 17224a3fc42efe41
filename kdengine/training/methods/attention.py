"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017).

The spatial attention map of a stage is the channel mean of |A|^p, flattened and l2-normalised; the student
matches the teacher's at several stages:

    L = CE + beta/2 * sum_j mean((Q_s^j / ||Q_s^j|| - Q_t^j / ||Q_t^j||)^2)

the authors' released code (``at_loss``: the mean of the squared difference, beta = 1000, beta/2 on the sum). The
paper's Eq. 2 writes the p-norm of the difference (not squared, not averaged); torchdistill calls that mode
'paper', the code's 'code'; mdistiller uses the code's with a weight of 1000 and no 1/2. A stage pair of different
sizes is average-pooled to the smaller (mdistiller's way). Defaults: p = 2, every stage after the stem.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, register_method, wide
from .taps import matching_stage, student_stages


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """The l2-normalised, flattened channel mean of |A|^p."""
    return F.normalize(wide(feature).abs().pow(p).mean(1).flatten(1))


def same_size(f_s: torch.Tensor, f_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The larger of two maps pooled to the smaller one's size."""
    hs, ht = f_s.shape[-2:], f_t.shape[-2:]
    if hs == ht:
        return f_s, f_t
    if hs[0] * hs[1] > ht[0] * ht[1]:
        return F.adaptive_avg_pool2d(f_s, ht), f_t
    return f_s, F.adaptive_avg_pool2d(f_t, hs)


def at_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor], beta: float,
            p: float = 2.0) -> torch.Tensor:
    total = 0.0
    for f_s, f_t in zip(student_maps, teacher_maps):
        f_s, f_t = same_size(f_s, f_t)
        total = total + (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()
    return beta / 2 * total


@register_method
class AT(Method):
    name = "at"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.stages = student_stages(ctx.kd, ctx.student)

    @property
    def student_stages(self):
        return self.stages

    def teacher_stages(self, i):
        return [matching_stage(s, self.ctx.student, self.ctx.teachers[i]) for s in self.stages]

    def distill(self, student, teacher, targets, index, i=0):
        k = self.ctx.kd
        return {"at": at_loss(student.features, teacher.features, k.at_beta, k.at_p)}
