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

from ..data.loader import Normalizer, channels_first
from ..errors import UsageError
from ..training.checkpoints import load_best
from .measures import MIN_AGREEMENT_CELLS
from .request import METHODS

CAM_CLASSES = dict(zip(METHODS, ("GradCAM", "GradCAMPlusPlus", "LayerCAM")))  # grad-cam's class per method


def target_layer(net: nn.Module, image_size: int | None = None,
                 min_cells: int = MIN_AGREEMENT_CELLS) -> tuple[str, nn.Module, int]:
    """(name, module, reduction) of a timm model's last convolutional stage, as timm's own ``feature_info``
    names it: ``layer4`` of a ResNet or SE-ResNet, the last block of VGG's ``features``, the last stage of a
    ConvNeXt or an EfficientNet. ``reduction`` is its stride: the map has image_size / reduction cells a side.

    Given ``image_size``, the deepest stage whose map has at least ``min_cells`` a side: at 224 px the last (7 x
    7), at the demo's 32 px an earlier one (stride 4: 8 x 8) where the last would have 1 x 1 cell, too few to
    agree or disagree on (explain.measures.MIN_AGREEMENT_CELLS)."""
    info = getattr(net, "feature_info", None)
    stages = [dict(i) for i in info] if info else []
    if not stages or "module" not in stages[-1]:
        raise UsageError(f"{type(net).__name__}: timm names no feature stages for it, so it has no class "
                         "activation map")
    chosen = stages[-1]
    if image_size is not None:
        enough = [s for s in stages if "module" in s and -(-image_size // int(s.get("reduction", 32))) >= min_cells]
        chosen = enough[-1] if enough else stages[-1]
    name = chosen["module"]
    return name, net.get_submodule(name), int(chosen.get("reduction", 32))


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


def as_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images (N, H, W) grey or (N, H, W, 3) colour as the float (N, C, H, W) a model reads."""
    block = np.ascontiguousarray(channels_first(np.asarray(images), 3 if np.asarray(images).ndim == 4 else 1))
    return torch.from_numpy(block).float().to(device)


def predict(model: nn.Module, images: np.ndarray, device: torch.device, batch: int = 64,
            multilabel: bool = False) -> np.ndarray:
    """Probabilities (N, classes) of uint8 images: a softmax, or a sigmoid per finding (``multilabel``)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            z = model(as_input(images[i:i + batch], device)).float()
            out.append((torch.sigmoid(z) if multilabel else torch.softmax(z, 1)).cpu().numpy())
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
            x = as_input(images[i:i + batch], device)
            maps.append(mapper(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets[i:i + batch]]))
    model.zero_grad(set_to_none=True)
    return np.concatenate(maps).astype(np.float32)


ROAD_SHARE = 20  # the percent of pixels ROAD removes, either way


def road_metrics():
    """grad-cam's ROAD pair, each removing 20% of the pixels: the most relevant (above the 80th percentile of the
    map) and the least relevant (below its 20th). grad-cam's ``ROADLeastRelevantFirst(percentile=p)`` keeps the
    pixels above the p-th percentile of the *inverted* map, so it removes the least relevant (100 - p)%: its
    default, 20, removed 80% of the image."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst  # the extra, as above

    return ROADMostRelevantFirst(percentile=100 - ROAD_SHARE), ROADLeastRelevantFirst(percentile=100 - ROAD_SHARE)


def faithfulness(model: nn.Module, images: np.ndarray, maps: np.ndarray, targets: list[int],
                 device: torch.device, batch: int = 16) -> tuple[list[float], list[float]]:
    """grad-cam's ROAD (Rong et al. 2022, "A consistent and efficient evaluation strategy for attribution
    methods"): the change of the target class's score when the map's most relevant 20% of pixels are removed
    (imputed from their neighbours), and when its least relevant 20% are. A faithful map loses more score by
    the first than by the second: (least − most) > 0, against the same for a random map (its chance level, not
    zero). The maps go in as their ranks, ties broken at random, so that exactly 20% is removed each way. Per
    image: (most relevant first, least relevant first)."""
    cam_class("gradcam")  # grad-cam is there
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # the extra, as above

    from .measures import ranked  # beside grad-cam's imports: only where ROAD is measured

    most, least = road_metrics()
    maps = ranked(maps)
    out_most, out_least = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = as_input(images[i:i + batch], device)
            t = [ClassifierOutputTarget(int(c)) for c in targets[i:i + batch]]
            out_most += np.ravel(most(x, maps[i:i + batch], t, model)).tolist()
            out_least += np.ravel(least(x, maps[i:i + batch], t, model)).tolist()
    return out_most, out_least


def reinitialised(meta: dict, seed: int) -> tuple[nn.Module, nn.Module]:
    """The same architecture with fresh random weights (seeded), as the model-randomisation sanity check needs
    (Adebayo et al. 2018, "Sanity checks for saliency maps"): maps that do not change when the weights are
    thrown away say nothing about what the model learned."""
    torch.manual_seed(seed)
    net = timm.create_model(meta["arch"], pretrained=False, num_classes=meta["num_classes"],
                            in_chans=meta["in_chans"])
    return nn.Sequential(Normalizer(meta["in_chans"]), net).eval(), net
