"""Relational KD (Park et al., CVPR 2019) and probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018): the
student matches the *relations* between the images of a batch in the teacher's penultimate embedding, not the
embedding itself (so the two may differ in size and no adapter is needed).

RKD: the pairwise distances, each set divided by its mean over distinct pairs, and the angles of every triplet;
the Huber loss (smooth L1, delta 1) between student and teacher, averaged over all B^2 and B^3 entries (the
released code's ``elementwise_mean``, the paper sums over pairs): L = CE + 25 L_dist + 50 L_angle.

PKT: cosine-similarity kernels turned into conditional probabilities (each row normalised), and
mean_ij p_t log((p_t + eps) / (p_s + eps)) (the released code: a mean over all B^2 entries rather than the
paper's sum of KL divergences per row, so a factor B^2 smaller; mdistiller's weight 30000 makes up for it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, register_method, wide

PDIST_EPS = 1e-12
PKT_EPS = 1e-7


def pairwise_distances(e: torch.Tensor, eps: float = PDIST_EPS) -> torch.Tensor:
    """Euclidean distances between the rows, zero on the diagonal (the released code's ``pdist``)."""
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    return d / d[d > 0].mean()


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).view(-1)


def rkd_parts(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance loss, angle loss), unweighted."""
    s, t = wide(student).flatten(1), wide(teacher).flatten(1)
    with torch.no_grad():
        t_d, t_a = _normalised_distances(t), _angles(t)
    return F.smooth_l1_loss(_normalised_distances(s), t_d), F.smooth_l1_loss(_angles(s), t_a)


def _kernel(e: torch.Tensor, eps: float) -> torch.Tensor:
    e = e / (e.pow(2).sum(1, keepdim=True).sqrt() + eps)
    e = torch.nan_to_num(e)
    k = (e @ e.t() + 1.0) / 2.0
    return k / k.sum(1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = PKT_EPS) -> torch.Tensor:
    ps, pt = _kernel(wide(student).flatten(1), eps), _kernel(wide(teacher).flatten(1), eps)
    return torch.mean(pt * torch.log((pt + eps) / (ps + eps)))


@register_method
class RKD(Method):
    name = "rkd"

    def distill(self, student, teacher, targets, index, i=0):
        k = self.ctx.kd
        distance, angle = rkd_parts(student.embedding, teacher.embedding)
        return {"rkd_distance": k.rkd_distance * distance, "rkd_angle": k.rkd_angle * angle}


@register_method
class PKT(Method):
    name = "pkt"

    def distill(self, student, teacher, targets, index, i=0):
        return {"pkt": self.ctx.kd.pkt_weight * pkt_loss(student.embedding, teacher.embedding)}
