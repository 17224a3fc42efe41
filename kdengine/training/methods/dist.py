"""DIST, "Knowledge Distillation from A Stronger Teacher" (Huang et al., NeurIPS 2022).

The student matches the *relations* of the teacher's softened outputs rather than their values: Pearson's
correlation between p_s and p_t per image, across the classes (the inter-class relation), and per class, across
the batch (the intra-class relation):

    L = CE + T^2 * (beta * (1 - mean_i rho(p_s[i, :], p_t[i, :])) + gamma * (1 - mean_j rho(p_s[:, j], p_t[:, j])))

with p = softmax(z / T). Pearson's rho is the cosine similarity of the mean-centred vectors, with eps = 1e-8 added to
the product of their norms (the released code). The paper's CIFAR-100 setting: beta = gamma = 2,
T = 4 (ImageNet: 1, 1, 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, register_method, wide

EPS = 1e-8


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Row-wise Pearson correlation of two matrices: the cosine of the mean-centred rows with eps added to the
    product of their norms, as the authors' released code (``F.cosine_similarity``, which torchdistill uses, clamps
    each norm at eps instead: the same value unless a row is nearly constant)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_parts(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
               eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(inter, intra): 1 - the mean Pearson correlation across classes, and across the batch, each times T^2."""
    ps = F.softmax(wide(student_logits) / temperature, dim=1)
    pt = F.softmax(wide(teacher_logits) / temperature, dim=1)
    t2 = temperature * temperature
    return t2 * (1 - pearson(ps, pt, eps).mean()), t2 * (1 - pearson(ps.t(), pt.t(), eps).mean())


@register_method
class DIST(Method):
    name = "dist"

    def distill(self, student, teacher, targets, index, i=0):
        k = self.ctx.kd
        inter, intra = dist_parts(student.logits, teacher.logits, self.ctx.temperature)
        return {"inter": k.dist_beta * inter, "intra": k.dist_gamma * intra}
