"""Proving a run's method before anything is queued (``preflight``): it loads (a method file imports and registers
it), it fits the task, and the feature stages it reads exist in the student and its teachers. The models are built
on the meta device: no memory, no weights."""
from __future__ import annotations

import timm
import torch

from ...errors import UsageError
from .base import declaration
from .plugins import method_class
from .taps import model_shape, student_stages


def _shape(model: str):
    with torch.device("meta"):
        return model_shape(timm.create_model(model, pretrained=False, num_classes=2))


def check_method(spec) -> None:
    """One line (UsageError) for the first problem with a KD run's method."""
    if spec.kind != "kd":
        return
    info = declaration(method_class(spec.kd))
    if not info.needs_network:
        return
    shape = _shape(spec.model)
    student_stages(spec.kd, shape, spec.model)  # raises when a stage does not exist
    if info.needs == "features":
        for t in spec.teachers:
            if not _shape(t.model).stages:
                raise UsageError(f"method {info.name} reads feature maps; teacher {t.model} has no feature_info")
