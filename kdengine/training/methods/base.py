"""What every distillation method shares: the outputs it reads, the context it is built from, its registry.

A method turns the student's and the teachers' outputs into named, already-weighted distillation terms (mdistiller's
``forward_train`` convention: the step sums them and logs each one). It computes from plain tensors: logits, lists
of feature maps, embeddings, and its own modules (adapters, projection heads, a memory bank as a buffer), so each
loss can be checked against its paper's formula without a model. Its trainable modules are submodules of the
method: they train with the student (:meth:`Method.parameters` joins the optimiser) and are saved in the run's
resumable checkpoint, never in the exported student (``best.safetensors`` holds the student alone).

Methods register where they are defined (``@register_method``), each declared once in ``method_catalog``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from ... import method_catalog as catalog
from ... import strategy_catalog as strategies
from ...runspec import method_args_dict


def wide(t: torch.Tensor) -> torch.Tensor:
    """A tensor in at least single precision: autocast's half-precision outputs are widened before a loss, a
    float64 tensor (the formula tests) stays as it is."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


@dataclass
class Outputs:
    """One forward pass of a model, as much of it as the method asked for."""
    logits: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)  # feature maps, at the stages asked for, in order
    embedding: torch.Tensor | None = None  # the pooled penultimate vector (the classifier's input)


@dataclass(frozen=True)
class ModelShape:
    """What a method's adapters are built from: a model's stages (timm's ``feature_info``) and its embedding."""
    stage_channels: tuple[int, ...]
    stage_reductions: tuple[int, ...]
    embedding_dim: int

    @property
    def stages(self) -> int:
        return len(self.stage_channels)


@dataclass
class Context:
    """Everything a method is built from: its settings, the task, the models' shapes, the training split."""
    kd: object  # runspec.KDConfig
    strategy: str
    num_classes: int
    n_train: int = 0  # images in the training split (a CRD bank holds one row per image)
    seed: int = 0
    student: ModelShape | None = None
    teachers: tuple[ModelShape, ...] = ()
    device: torch.device = torch.device("cpu")
    log: Callable[[str], None] = lambda _msg: None
    task: object = None  # training.task.Task: softmax or sigmoid, the divergence (multi-class when not given)

    def __post_init__(self) -> None:
        if self.task is None:
            from ..task import MULTICLASS, Task  # noqa: PLC0415 - task imports this package's base (wide)

            self.task = Task(MULTICLASS, self.num_classes)

    @property
    def temperature(self) -> float:
        """The softening temperature of a logit method: a strategy whose teacher brings its own says which key
        holds it (tf-reg's virtual teacher: ``kd.tf_temperature``, Yuan et al.'s loss uses it as T), logit
        standardisation its base temperature, else ``kd.temperature``. ``KDConfig.reads`` follows the same rule."""
        kd = self.kd
        own = strategies.CATALOGUE[self.strategy].temperature if self.strategy in strategies.CATALOGUE else None
        if own is not None:
            return getattr(kd, own)
        if kd.logit_standardize and catalog.CATALOGUE.get(kd.method, catalog.CATALOGUE["hinton"]).standardizable:
            return kd.ls_temperature
        return kd.temperature


class Method(nn.Module):
    """A distillation method: ``terms(student, teachers, targets, index)`` -> {name: weighted term}.

    ``student_stages``/``teacher_stages``: the feature maps it reads (indices into ``feature_info``);
    ``embedding``: whether it reads the pooled penultimate vector. ``ce_weight``: the weight of the hard-label
    loss beside it (Hinton's 1 - alpha; 1 for the others, as their papers train)."""

    name: ClassVar[str] = ""
    declaration: ClassVar[catalog.Method | None] = None  # a plugin's own; the built-ins' are in method_catalog
    ce_weight: float = 1.0

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx
        self.info = declaration(type(self))
        self.args = method_args_dict(ctx.kd.method_args)  # a plugin's own settings (kd.method_args)

    # what it reads -------------------------------------------------------------------------------------------
    @property
    def student_stages(self) -> list[int]:
        return []

    def teacher_stages(self, i: int) -> list[int]:
        return []

    @property
    def embedding(self) -> bool:
        return self.info.needs == catalog.EMBEDDING

    # the loss --------------------------------------------------------------------------------------------------
    def terms(self, student: Outputs, teachers: list[Outputs], targets: torch.Tensor,
              index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Several teachers: the mean of each one's terms (Hinton's loss overrides this: the ensemble strategy
        averages the teachers' softened outputs instead)."""
        per = [self.distill(student, t, targets, index, i) for i, t in enumerate(teachers)]
        if len(per) == 1:
            return per[0]
        return {k: sum(p[k] for p in per) / len(per) for k in per[0]}

    def distill(self, student: Outputs, teacher: Outputs, targets: torch.Tensor, index: torch.Tensor,
                i: int = 0) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch's first step (a warm-up factor, a generator's seed)."""

    def extra_parameters(self) -> int:
        """What trains or is kept beside the student (adapters, heads, banks): reported with the run."""
        return sum(p.numel() for p in self.parameters()) + sum(b.numel() for b in self.buffers())


def declaration(cls: type[Method]) -> catalog.Method:
    """A method's declaration: the catalogue's for a built-in one, its own ``declaration`` for a plugin, else a
    logit method for every task whose step is not captured (nothing is known of it)."""
    return catalog.get(cls.name) or cls.declaration or catalog.Method(
        cls.name, cls.name, "a plugin", catalog.LOGITS, (cls.__doc__ or "").strip().split("\n")[0], graph_safe=False)


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Register a method class under its ``name``, where it is defined (as timm's ``register_model``)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' is registered twice")
    METHODS[cls.name] = cls
    return cls
