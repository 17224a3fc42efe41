"""The teacher stays in eval mode under no_grad; its BatchNorm statistics never change."""
from __future__ import annotations

import timm
import torch

from kdengine.data.loader import Normalizer
from kdengine.training.teacher import FrozenTeacher


def test_frozen_teacher_ignores_train_and_keeps_bn_stats():
    net = timm.create_model("test_resnet", num_classes=3, in_chans=1)
    teacher = FrozenTeacher(net, Normalizer(1))
    parent = torch.nn.ModuleDict({"teacher": teacher, "student": torch.nn.Linear(2, 2)})
    parent.train()  # what a trainer does every epoch
    assert not teacher.training and not net.training
    assert all(not m.training for m in net.modules())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randint(0, 255, (4, 1, 32, 32), dtype=torch.uint8)
    out = teacher(x)
    assert not out.requires_grad
    assert all(not p.requires_grad for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
