"""What differs between a multi-class, a binary and a multi-label task, in one object: the hard-label loss, turning
logits into probabilities, softening them for distillation, the decision rule, and the running sums of an epoch.

- **multi-class** (and **binary**, two classes): a softmax over the classes, cross-entropy, the argmax.
- **multi-label** (chest X-ray findings): a sigmoid per finding, binary cross-entropy averaged over the known labels
  (a label the uncertainty policy leaves unknown, -1, is masked out: U-Ignore of Irvin et al. 2019), a finding is
  predicted at probability 0.5 during training (the val-chosen thresholds are the metrics' business).

Distillation reads the task too: Hinton's softened targets are the teacher's softmax at T, or for a multi-label task
its sigmoid per finding at T, and the divergence is the KL summed over classes, or the binary KL summed over the
findings (both averaged over the batch, times T^2 by the method). Methods declared for single-label tasks alone (DKD,
DIST, logit standardisation, tf-reg's virtual teacher) are refused for a multi-label one before anything is queued.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .methods.base import wide
from .step import macro_f1_from_confusion

MULTICLASS, BINARY, MULTILABEL = "multiclass", "binary", "multilabel"


class Task:
    def __init__(self, kind: str, num_outputs: int) -> None:
        self.kind, self.num_outputs = kind, num_outputs

    @property
    def multilabel(self) -> bool:
        return self.kind == MULTILABEL

    @classmethod
    def of_source(cls, source) -> "Task":
        return cls(source.task_kind, len(source.class_names))

    # -- the hard-label loss --------------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy, or for a multi-label task binary cross-entropy over the known labels (mean: over them;
        sum: per image, summed over its known labels, then over the batch, as cross-entropy's sum is)."""
        z = wide(logits)
        if not self.multilabel:
            return F.cross_entropy(z, targets, reduction=reduction)
        known = (targets >= 0).to(z.dtype)
        per = F.binary_cross_entropy_with_logits(z, targets.clamp(min=0).to(z.dtype), reduction="none") * known
        if reduction == "sum":
            return per.sum()
        return per.sum() / known.sum().clamp(min=1)

    # -- probabilities, softened targets and their divergence -------------------------------------------------------
    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(wide(logits)) if self.multilabel else F.softmax(wide(logits), 1)

    def soften(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """The teacher's softened outputs at temperature T."""
        return torch.sigmoid(wide(logits) / temperature) if self.multilabel else \
            F.softmax(wide(logits) / temperature, dim=1)

    def divergence(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float,
                   reduction: str = "batchmean") -> torch.Tensor:
        """KL(teacher || student) at T, averaged over the batch (``mean``: over batch x classes, Yuan et al.'s
        released code): over the classes, or for a multi-label task the binary KL summed over the findings."""
        s = wide(student_logits)
        if not self.multilabel:
            log_ps = F.log_softmax(s / temperature, dim=1)
            # Reduced by hand: PyTorch has announced that kl_div's "mean" will become "batchmean".
            kl_sum = F.kl_div(log_ps, teacher_probs, reduction="sum")
        else:
            q = teacher_probs
            z = s / temperature
            # q log q + (1 - q) log(1 - q) - q log p - (1 - q) log(1 - p), stable through log-sigmoid
            own = torch.xlogy(q, q) + torch.xlogy(1 - q, 1 - q)
            kl_sum = (own - q * F.logsigmoid(z) - (1 - q) * F.logsigmoid(-z)).sum()
        return kl_sum / s.shape[0] if reduction == "batchmean" else kl_sum / s.numel()

    # -- the epoch's running sums ---------------------------------------------------------------------------------
    def confusion_shape(self) -> tuple[int, ...]:
        """A confusion matrix (true x predicted), or per finding a 2 x 2 one (true x predicted, 0/1)."""
        k = self.num_outputs
        return (k, 2, 2) if self.multilabel else (k, k)

    def confusion_cells(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat cell index, count) of each prediction, for ``index_add_`` into the flattened matrix: no index check
        that could sync with the host inside a captured graph. An unknown label counts nowhere."""
        if not self.multilabel:
            cells = targets * self.num_outputs + logits.argmax(1)
            return cells, torch.ones_like(cells)
        k = self.num_outputs
        pred = (logits > 0).long()
        known = targets >= 0
        cells = torch.arange(k, device=logits.device) * 4 + targets.clamp(min=0).long() * 2 + pred
        return cells.flatten(), known.long().flatten()


def accuracy_and_f1(confusion) -> tuple[float, float]:
    """Accuracy and macro-F1 from the epoch's confusion (numpy): of the classes, or, for a multi-label task
    (K x 2 x 2), the share of known labels predicted right and the mean F1 over the findings (scikit-learn's
    ``zero_division=0``)."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim == 2:
        seen = cm.sum()
        return (float(np.trace(cm) / seen) if seen else float("nan")), macro_f1_from_confusion(cm)
    seen = cm.sum()
    right = cm[:, 0, 0].sum() + cm[:, 1, 1].sum()
    tp, fp, fn = cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0]
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return (float(right / seen) if seen else float("nan")), float(f1.mean()) if len(f1) else float("nan")
