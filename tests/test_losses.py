"""Golden values of the distillation loss against an independent float64 numpy computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdengine.training.losses import (ensemble_targets, kd_loss, kd_terms, soft_targets,
                                      virtual_teacher_targets)


def np_softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def np_kd(s, t, y, alpha, T, reduction="batchmean"):
    """L = (1-a) CE(s, y) + a T^2 KL(p_t^T || p_s^T), written out by hand in float64."""
    B, K = s.shape
    ce = -np.log(np_softmax(s)[np.arange(B), y]).mean()
    pt, ps = np_softmax(t / T), np_softmax(s / T)
    kl_sum = (pt * (np.log(pt) - np.log(ps))).sum()
    kl = kl_sum / B if reduction == "batchmean" else kl_sum / (B * K)
    return (1 - alpha) * ce + alpha * T * T * kl


@pytest.fixture
def logits():
    rng = np.random.default_rng(42)
    s = rng.normal(0, 2, (6, 7))
    t = rng.normal(0, 3, (6, 7))
    y = rng.integers(0, 7, 6)
    return s, t, y


@pytest.mark.parametrize("alpha, T", [(0.9, 4.0), (0.5, 2.0), (0.9, 1.0), (0.0, 4.0), (1.0, 4.0), (1.0, 1.0), (0.3, 20.0)])
@pytest.mark.parametrize("reduction", ["batchmean", "mean"])
def test_kd_loss_matches_numpy(logits, alpha, T, reduction):
    s, t, y = logits
    expected = np_kd(s, t, y, alpha, T, reduction)
    got = kd_loss(torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64),
                  torch.tensor(y), alpha, T, reduction)
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_pure_kd(logits):
    s, t = (torch.tensor(a, dtype=torch.float32) for a in logits[:2])
    y = torch.tensor(logits[2])
    ce = torch.nn.functional.cross_entropy(s, y).item()
    assert kd_loss(s, t, y, alpha=0.0, temperature=4.0).item() == pytest.approx(ce, rel=1e-6)
    terms = kd_terms(s, y, soft_targets(t, 4.0), alpha=1.0, temperature=4.0)
    assert terms["ce"].item() == 0.0 and terms["kd"].item() > 0


def test_yuan_mean_reduction_is_k_times_smaller(logits):
    s, t, y = (torch.tensor(a) for a in logits)
    a = kd_terms(s, y, soft_targets(t, 4.0), 1.0, 4.0, "batchmean")["kd"].item()
    b = kd_terms(s, y, soft_targets(t, 4.0), 1.0, 4.0, "mean")["kd"].item()
    assert a / b == pytest.approx(7.0, rel=1e-5)


def test_hand_worked_values():
    # identical uniform logits: KL = 0, CE = log(2)
    z = torch.zeros(1, 2)
    assert kd_loss(z, z, torch.tensor([0]), alpha=0.5, temperature=3.0).item() == pytest.approx(0.5 * math.log(2))
    # a teacher equal to the student gives no distillation signal, whatever T
    s = torch.tensor([[1.0, -2.0, 0.5]])
    assert kd_terms(s, torch.tensor([2]), soft_targets(s, 7.0), 1.0, 7.0)["kd"].item() == pytest.approx(0.0, abs=1e-7)


def test_virtual_teacher_and_ensemble():
    y = torch.tensor([2, 0])
    p = virtual_teacher_targets(y, 5, a=0.9, temperature=1.0)
    assert torch.allclose(p[0], torch.tensor([0.025, 0.025, 0.9, 0.025, 0.025]))
    soft = virtual_teacher_targets(y, 5, a=0.9, temperature=4.0)
    assert soft[0, 2] < 0.9 and soft[0, 2] == soft[0].max()
    assert torch.allclose(soft.sum(1), torch.ones(2))
    t1, t2 = torch.randn(3, 4), torch.randn(3, 4)
    avg = ensemble_targets([t1, t2], 2.0)
    expected = (np_softmax(t1.double().numpy() / 2) + np_softmax(t2.double().numpy() / 2)) / 2
    assert np.allclose(avg.numpy(), expected, atol=1e-6)
