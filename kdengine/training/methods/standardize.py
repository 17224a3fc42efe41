"""Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024): a modifier of
any logit method (hinton, dkd, dist; ``kd.logit_standardize = true``).

Both the student's and the teacher's logits are z-scored per sample before they are softened, so the student
matches the teacher's logit *relations* rather than their range; the softening temperature becomes the paper's
*base temperature* (``kd.ls_temperature``, the authors' 2). The standard deviation is the authors' released code's
(``torch.std``: Bessel-corrected, ddof = 1, with 1e-7 added), where the paper writes the population deviation: the
two differ by sqrt(K / (K - 1)), a constant factor on the temperature. The authors train KD with it at a
distillation weight of 9 beside a cross-entropy weight of 0.1 (``--base-temp 2 --kd-weight 9``): kdstudy's
``kd.ls_weight`` (10) multiplies the method's distillation terms, so hinton's alpha of 0.9 gives their 9. The
cross-entropy reads the raw logits.
"""
from __future__ import annotations

import torch

from .base import wide

EPS = 1e-7


def standardize(logits: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(z - mean_k z) / (eps + std_k z), per sample over the classes (std with ddof = 1, as the released code)."""
    z = wide(logits)
    return (z - z.mean(dim=-1, keepdim=True)) / (eps + z.std(dim=-1, keepdim=True))
