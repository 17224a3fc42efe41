"""A frozen teacher: always in eval mode, never a gradient, BatchNorm statistics never updated."""
from __future__ import annotations

import torch
from torch import nn


class FrozenTeacher(nn.Module):
    """Wraps a trained model. ``train()`` cannot switch it back to training mode
    (torchdistill once lost its ``teacher.eval()`` and distilled with drifting BatchNorm)."""

    def __init__(self, model: nn.Module, normalizer: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.normalizer = normalizer
        for p in self.model.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)

    def forward(self, raw_uint8: torch.Tensor) -> torch.Tensor:
        # inference_mode, not just no_grad: no autograd bookkeeping at all (the same numbers, a little faster)
        with torch.inference_mode():
            return self.model(self.normalizer(raw_uint8))
