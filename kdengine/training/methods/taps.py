"""What a method reads from inside a model, on timm's feature API: the stages of ``feature_info`` and the pooled
penultimate embedding.

timm declares every model's stages in ``model.feature_info`` (module name, channels, reduction): the modules its own
``features_only`` wrapper hooks. A :class:`Tap` hooks the same modules, and the classifier's input (the pooled
embedding), so that one ordinary forward pass yields the logits, the stages a method asked for and the embedding:
the logits are computed exactly as without the tap, and nothing is captured unless a method asked for it. It works
for every architecture kdstudy lists (VGG11, ResNet18/34/50, SE-ResNet50/101) and any timm model with feature info.

Stages are matched by relative depth when a teacher and its student have different numbers of them.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import UsageError
from ...runspec import stage_choice
from .base import ModelShape, Outputs


def _stage_modules(net: nn.Module) -> list[dict]:
    info = getattr(net, "feature_info", None)
    if not info:
        raise UsageError(f"{type(net).__name__} has no feature_info: feature methods need a timm model with one")
    return [dict(i) for i in info]


def model_shape(net: nn.Module) -> ModelShape:
    """A model's stages (channels, reductions) and its embedding's size, from timm's metadata alone."""
    stages = _stage_modules(net)
    classifier = net.get_classifier()
    dim = getattr(classifier, "in_features", None) or getattr(net, "num_features")
    return ModelShape(tuple(int(s["num_chs"]) for s in stages), tuple(int(s["reduction"]) for s in stages), int(dim))


def student_stages(kd, shape: ModelShape, model: str = "the student") -> list[int]:
    """The student stages a feature method reads: FitNet's hint stage (the middle one by default), or attention
    transfer's (every stage after the stem by default). One line when a stage does not exist."""
    if kd.method == "fitnet":
        chosen = stage_choice(kd.fitnet_stage, "middle")
        stages, key = (chosen if chosen is not None else [shape.stages // 2]), "fitnet_stage"
        if len(stages) != 1:
            raise UsageError("kd.fitnet_stage takes one stage (FitNet hints at one layer)", field="fitnet_stage")
    elif kd.method == "at":
        chosen = stage_choice(kd.at_stages, "all")
        stages, key = (chosen if chosen is not None else list(range(1, shape.stages))), "at_stages"
    else:
        return []
    missing = [i for i in stages if i >= shape.stages]
    if missing:
        raise UsageError(f"kd.{key}: stage {missing[0]} does not exist; {model} has stages 0-{shape.stages - 1}",
                         field=key)
    return stages


def matching_stage(i: int, student: ModelShape, teacher: ModelShape) -> int:
    """The teacher's stage at the student stage's relative depth."""
    if student.stages == teacher.stages or student.stages < 2:
        return min(i, teacher.stages - 1)
    return round(i * (teacher.stages - 1) / (student.stages - 1))


class Tap:
    """A model's forward pass as :class:`Outputs`: hooks on the ``feature_info`` modules at ``stages`` and (with
    ``embedding``) on the classifier's input. ``clone``: copy what was captured (a teacher under inference mode:
    its tensors cannot be saved for the student's backward pass)."""

    def __init__(self, net: nn.Module, forward, stages: list[int] = (), embedding: bool = False,
                 clone: bool = False) -> None:
        self.forward, self.stages, self.embedding, self.clone = forward, list(stages), embedding, clone
        self.slots: dict = {}
        self.armed = False  # captures only inside __call__: an evaluation through the same model keeps nothing
        self.handles = []
        modules = dict(net.named_modules())
        infos = _stage_modules(net) if self.stages else []
        for i in self.stages:
            self.handles.append(modules[infos[i]["module"]].register_forward_hook(self._keep(i)))
        if embedding:
            self.handles.append(net.get_classifier().register_forward_pre_hook(self._keep_input))

    def _keep(self, i: int):
        def hook(_module, _inputs, output):
            if self.armed:
                self.slots[i] = output
        return hook

    def _keep_input(self, _module, inputs):
        if self.armed:
            self.slots["embedding"] = inputs[0].flatten(1)

    def __call__(self, x: torch.Tensor) -> Outputs:
        self.slots.clear()
        self.armed = True
        try:
            logits = self.forward(x)
        finally:
            self.armed = False
        take = (lambda t: t.clone()) if self.clone else (lambda t: t)
        out = Outputs(take(logits), [take(self.slots[i]) for i in self.stages],
                      take(self.slots["embedding"]) if self.embedding else None)
        self.slots.clear()
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
