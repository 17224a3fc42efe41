"""The architectures kdstudy knows by name (the thesis's and the tiny test models), with no torch import (the TUI
reads this); kdengine.strategy_catalog catalogues the strategies.

The thesis's architectures come first; tiny models serve tests and CPU smoke
runs. Any other timm model name is accepted as it is by the engine.
"""
from __future__ import annotations

THESIS = ("vgg11", "resnet18", "resnet34", "resnet50", "seresnet50", "seresnet101")
TINY = ("test_resnet", "resnet10t", "test_efficientnet", "test_convnext")

# timm has no pretrained weights for these; the mapped name has them.
PRETRAINED_ALIASES = {"seresnet101": "legacy_seresnet101"}

# Parameter counts at 7 classes, 1 input channel (computed by `kdengine models`;
# kept here so that the TUI can sort teacher/student by size without torch).
APPROX_PARAMS = {
    "vgg11": 128_793_863,
    "resnet18": 11_173_831,
    "resnet34": 21_281_991,
    "resnet50": 23_516_103,
    "seresnet50": 26_047_095,
    "seresnet101": 47_285_943,
    "test_resnet": 373_079,
    "resnet10t": 4_925_647,
    "test_efficientnet": 100_563,
    "test_convnext": 206_815,
}


# The smallest image side every catalogue model takes (its total stride): proved by a test against timm,
# so that the TUI can check the image size without torch.
MIN_IMAGE_SIZE = 32


def known_names() -> list[str]:
    return list(THESIS) + list(TINY)
