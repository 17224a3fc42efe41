"""A frozen teacher: always in eval mode, never a gradient, BatchNorm statistics never updated."""
from __future__ import annotations

import timm
import torch
from torch import nn

from ..data.loader import Normalizer
from .checkpoints import load_best


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


def frozen_from_checkpoint(checkpoint_dir, dev) -> tuple[FrozenTeacher, nn.Module]:
    """A finished run's best weights as a frozen model on ``dev`` (its architecture from the checkpoint's
    metadata, not from a spec): a teacher, or a model under evaluation."""
    state, meta = load_best(checkpoint_dir)
    net = timm.create_model(meta["arch"], pretrained=False, num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    net.load_state_dict(state)
    net = net.to(dev.device)
    if dev.channels_last:
        net = net.to(memory_format=torch.channels_last)
    frozen = FrozenTeacher(net, Normalizer(meta["in_chans"], dev.channels_last)).to(dev.device)
    return frozen, net
