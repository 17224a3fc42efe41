"""Contrastive representation distillation (Tian, Krishnan & Isola, ICLR 2020).

Each embedding is projected to ``kd.crd_dim`` dimensions by a linear head and l2-normalised (a head for the
student and one for the teacher, both trained with the student). Two memory banks hold, for every training image,
a running average of its projected student and teacher embeddings (momentum ``kd.crd_momentum``, renormalised
after each update). The student's embedding of an image is scored against the teacher bank's row for the same
image (the positive) and ``kd.crd_negatives`` rows drawn at random (negatives), and the teacher's against the
student bank likewise; noise-contrastive estimation (NCE) with temperature tau:

    x[i, k] = exp(m[c_ik] . v_i / tau) / Z,   P_n = 1 / N,   m = K
    NCE(x) = -(sum_i log(x_i0 / (x_i0 + m P_n + eps)) + sum_{i, k >= 1} log(m P_n / (x_ik + m P_n + eps))) / B
    L = CE + w * (NCE(x_s) + NCE(x_t))

The released code's conventions (RepDistiller, mdistiller): Z is set once, on the first batch, to the mean of the
exponentiated scores times N; the banks start uniform in [-1/sqrt(d/3), 1/sqrt(d/3)]; negatives are drawn
uniformly over the training set (the positive may be drawn again, as there). Defaults: weight 0.8, 128 dimensions,
16384 negatives (at most N - 1 here: a small training set has fewer images), tau 0.07, momentum 0.5.

Everything it keeps (the heads, the banks, Z) is part of the method's state, saved in the run's resumable
checkpoint: a resumed run restarts its epoch from the same banks. The negatives of an epoch come from a generator
seeded by (seed, epoch), so a resumed epoch draws the same ones. The draw is host-side randomness per step: the
step is not captured as a CUDA graph (it runs eagerly, and says so).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, register_method

NCE_EPS = 1e-7


class Embed(nn.Module):
    """A linear projection, l2-normalised."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.flatten(1).to(self.linear.weight.dtype))
        return x / x.pow(2).sum(1, keepdim=True).sqrt()


def nce_loss(x: torch.Tensor, n_data: int, eps: float = NCE_EPS) -> torch.Tensor:
    """NCE of a score matrix ``x`` (B, K + 1), the positive in column 0."""
    m = x.shape[1] - 1
    noise = m / float(n_data)
    log_pos = torch.log(x[:, 0] / (x[:, 0] + noise + eps))
    log_neg = torch.log(noise / (x[:, 1:] + noise + eps))
    return -(log_pos.sum() + log_neg.sum()) / x.shape[0]


def bank_scores(bank: torch.Tensor, contrast: torch.Tensor, v: torch.Tensor, temperature: float) -> torch.Tensor:
    """exp(bank[c_ik] . v_i / tau), unnormalised (B, K + 1)."""
    rows = bank[contrast.view(-1)].view(*contrast.shape, bank.shape[1]).detach()
    return torch.exp(torch.bmm(rows, v.unsqueeze(2)).squeeze(2) / temperature)


def bank_update(bank: torch.Tensor, index: torch.Tensor, v: torch.Tensor, momentum: float) -> None:
    """Rows ``index`` become the l2-normalised momentum average of themselves and ``v`` (in place)."""
    with torch.no_grad():
        rows = bank[index] * momentum + v.detach() * (1 - momentum)
        bank.index_copy_(0, index, rows / rows.pow(2).sum(1, keepdim=True).sqrt())


@register_method
class CRD(Method):
    name = "crd"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        k, n = ctx.kd, ctx.n_train
        self.negatives = min(k.crd_negatives, max(1, n - 1))
        if self.negatives < k.crd_negatives:
            ctx.log(f"crd: {self.negatives} negatives per sample (kd.crd_negatives is {k.crd_negatives}; the training "
                    f"split has {n} images)")
        self.embed_s = Embed(ctx.student.embedding_dim, k.crd_dim)
        self.embed_t = nn.ModuleList(Embed(t.embedding_dim, k.crd_dim) for t in ctx.teachers)
        stdv = 1.0 / math.sqrt(k.crd_dim / 3)
        gen = torch.Generator().manual_seed(ctx.seed)
        banks = [torch.rand(n, k.crd_dim, generator=gen).mul_(2 * stdv).add_(-stdv)
                 for _ in range(2 * len(ctx.teachers))]
        for i in range(len(ctx.teachers)):  # per teacher: the student's bank and the teacher's
            self.register_buffer(f"bank_s{i}", banks[2 * i].to(ctx.device))
            self.register_buffer(f"bank_t{i}", banks[2 * i + 1].to(ctx.device))
        self.register_buffer("z", -torch.ones(2 * len(ctx.teachers), device=ctx.device))  # Z_s, Z_t per teacher
        self.gen = torch.Generator(device=ctx.device)

    def on_epoch_start(self, epoch: int) -> None:
        self.gen.manual_seed(self.ctx.seed * 100_003 + epoch)

    def contrast(self, index: torch.Tensor) -> torch.Tensor:
        """(B, K + 1) bank rows: the image itself, then K drawn uniformly over the training split."""
        drawn = torch.randint(0, self.ctx.n_train, (index.shape[0], self.negatives + 1), generator=self.gen,
                              device=index.device)
        drawn[:, 0] = index
        return drawn

    def _z(self, slot: int, scores: torch.Tensor) -> torch.Tensor:
        if self.z[slot] < 0:  # the first batch sets the constant (the released code's estimate of the partition)
            self.z[slot] = scores.detach().mean() * self.ctx.n_train
        return self.z[slot].clone()  # a copy: the next slot's first write must not touch what backward reads

    def distill(self, student, teacher, targets, index, i=0):
        k = self.ctx.kd
        v_s, v_t = self.embed_s(student.embedding), self.embed_t[i](teacher.embedding)
        bank_s, bank_t = getattr(self, f"bank_s{i}"), getattr(self, f"bank_t{i}")
        c = self.contrast(index)
        out_s = bank_scores(bank_t, c, v_s, k.crd_temperature)  # the student against the teacher's bank
        out_t = bank_scores(bank_s, c, v_t, k.crd_temperature)  # the teacher against the student's bank
        out_s, out_t = out_s / self._z(2 * i, out_s), out_t / self._z(2 * i + 1, out_t)
        bank_update(bank_s, index, v_s, k.crd_momentum)
        bank_update(bank_t, index, v_t, k.crd_momentum)
        n = self.ctx.n_train
        return {"crd": k.crd_weight * (nce_loss(out_s, n) + nce_loss(out_t, n))}
