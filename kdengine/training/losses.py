"""A run's loss: the hard-label loss, plus, for a KD run, its method's distillation terms from its strategy's
teachers.

The strategy says who teaches (``strategy_catalog``): teacher networks (normal, reverse, defective, tf-self,
ensemble), or tf-reg's virtual teacher, whose logits log(p_v) are made here from the labels. The method says how
the student learns from them (``method_catalog``, ``methods/``). Logit standardisation, where asked for, z-scores
both sides' logits before the method sees them and scales its terms (``methods/standardize.py``); the
cross-entropy always reads the raw logits.

Terms are named and already weighted (mdistiller's convention): the step sums them and logs each one. The hard
loss is ``ce``, weighted by the method (Hinton's 1 - alpha, else 1).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .. import strategy_catalog as catalog
from .methods import Context, Method, Outputs
from .methods.hinton import (ensemble_targets, kd_loss, kd_terms, soft_targets,  # noqa: F401 - re-exported
                             virtual_teacher_logits, virtual_teacher_targets)
from .methods.plugins import method_class
from .methods.standardize import standardize


class Distiller(nn.Module):
    """The loss of one run. ``method`` is None for a cross-entropy run (a teacher, a baseline)."""

    def __init__(self, spec, ctx: Context) -> None:
        super().__init__()
        self.spec, self.ctx = spec, ctx
        self.method: Method | None = method_class(spec.kd)(ctx) if spec.kind == "kd" else None
        self.virtual = spec.kind == "kd" and catalog.get(spec.strategy).teacher_source == "virtual"
        self.standardized = bool(self.method is not None and spec.kd.logit_standardize and
                                 self.method.info.standardizable)

    @property
    def graph_safe(self) -> bool:
        return self.method is None or self.method.info.graph_safe

    def on_epoch_start(self, epoch: int) -> None:
        if self.method is not None:
            self.method.on_epoch_start(epoch)

    def terms(self, student: Outputs, teachers: list[Outputs], targets: torch.Tensor,
              index: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = self.ctx.task.loss(student.logits, targets)
        if self.method is None:
            return {"ce": ce}
        if self.virtual:
            teachers = [Outputs(virtual_teacher_logits(targets, self.ctx.num_classes, self.spec.kd.tf_a))]
        if self.standardized:
            student = replace(student, logits=standardize(student.logits))
            teachers = [replace(t, logits=standardize(t.logits)) for t in teachers]
        kd = self.method.terms(student, teachers, targets, index)
        if self.standardized:
            kd = {k: self.spec.kd.ls_weight * v for k, v in kd.items()}
        return {"ce": self.method.ce_weight * ce, **kd}


def distiller_for(spec, num_classes: int, **context) -> Distiller:
    """The loss a run trains with. ``context``: what its method is built from besides the spec (the models'
    shapes, the training split's size, the device: :class:`~.methods.Context`)."""
    return Distiller(spec, Context(kd=spec.kd, strategy=spec.strategy, num_classes=num_classes, seed=spec.seed,
                                   **context))
