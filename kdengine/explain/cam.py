"""Class activation maps of a finished run's best weights, with the maintained grad-cam package
(pytorch-grad-cam): Grad-CAM, Grad-CAM++ and LayerCAM at the model's last convolutional stage.

The model is built anew from the checkpoint for this (its weights file is only read), put in evaluation mode,
and left with no gradient: grad-cam back-propagates the target class's score to the stage's activations, and
the parameters' gradients it fills on the way are dropped at the end.
"""
from __future__ import annotations

import numpy as np
import timm
import torch
from torch import nn

from ..data.loader import Normalizer
from ..errors import UsageError
from ..training.checkpoints import load_best
from .request import METHODS

CAM_CLASSES = dict(zip(METHODS, ("GradCAM", "GradCAMPlusPlus", "LayerCAM")))  # grad-cam's class per method


def target_layer(net: nn.Module) -> tuple[str, nn.Module, int]:
    """(name, module, reduction) of a timm model's last convolutional stage, as timm's own ``feature_info``
    names it: ``layer4`` of a ResNet or SE-ResNet, the last block of VGG's ``features``, the last stage of a
    ConvNeXt or an EfficientNet. ``reduction`` is its stride: the map has image_size / reduction cells a side."""
    info = getattr(net, "feature_info", None)
    stages = [dict(i) for i in info] if info else []
    if not stages or "module" not in stages[-1]:
        raise UsageError(f"{type(net).__name__}: timm names no feature stages for it, so it has no class "
                         "activation map")
    name = stages[-1]["module"]
    return name, net.get_submodule(name), int(stages[-1].get("reduction", 32))


def load_for_maps(checkpoint_dir, device: torch.device) -> tuple[nn.Module, nn.Module, dict]:
    """(normaliser + network, the network, checkpoint metadata), in evaluation mode on ``device``."""
    state, meta = load_best(checkpoint_dir)
    net = timm.create_model(meta["arch"], pretrained=False, num_classes=meta["num_classes"],
                            in_chans=meta["in_chans"])
    net.load_state_dict(state)
    model = nn.Sequential(Normalizer(meta["in_chans"]), net).to(device).eval()
    return model, net, meta


def cam_class(method: str):
    """grad-cam's class for a method; one line naming the extra when grad-cam is not installed."""
    try:
        import pytorch_grad_cam  # the optional extra: kdstudy[explain] (make setup installs it)
    except ImportError:
        raise UsageError("explain needs the grad-cam package: pip install 'kdstudy[explain]'") from None
    if method not in CAM_CLASSES:
        raise UsageError(f"unknown method '{method}' (choose {', '.join(METHODS)})")
    return getattr(pytorch_grad_cam, CAM_CLASSES[method])


def predict(model: nn.Module, images: np.ndarray, device: torch.device, batch: int = 64) -> np.ndarray:
    """Softmax probabilities (N, classes) of uint8 images (N, H, W)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).unsqueeze(1).to(device)
            out.append(torch.softmax(model(x).float(), 1).cpu().numpy())
    return np.concatenate(out)


def compute_maps(model: nn.Module, layer: nn.Module, images: np.ndarray, targets: list[int], method: str,
                 device: torch.device, batch: int = 16) -> np.ndarray:
    """(N, H, W) float32 maps in [0, 1] (each scaled to its own maximum, as grad-cam does) for the classes in
    ``targets``; the model keeps its weights and is left without gradients."""
    cam = cam_class(method)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # the optional extra, as above

    model.eval()
    maps = []
    with cam(model=model, target_layers=[layer]) as mapper:
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).unsqueeze(1).float().to(device)
            maps.append(mapper(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets[i:i + batch]]))
    model.zero_grad(set_to_none=True)
    return np.concatenate(maps).astype(np.float32)
