"""A training run's GPU memory, estimated before it ever ran, from its models on the meta device.

No memory is allocated and no GPU is needed (milliseconds per model). The estimate is: the student's
weights, gradients and optimiser state; the tensors its forward pass saves for backward (counted with
``saved_tensors_hooks``, halved under bf16 autocast); each teacher's weights and the largest two
activations of its forward pass; and, with ``--device-input``, the decoded cache. It over-counts where
tensors are shared, which is the safe side; ``packing.calibration`` scales it by how far the estimates
fell short of the measured peaks so far.
"""
from __future__ import annotations

import timm
import torch

from ..models.factory import check_name, input_channels
from .methods.memory import method_extra_bytes
from .methods.taps import model_shape

OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1}
AMP_ACTIVATIONS = 0.5  # bf16 activations take half of fp32's bytes


def _meta_model(name: str, num_classes: int, chans: int):
    with torch.device("meta"):
        return timm.create_model(check_name(name), pretrained=False, num_classes=num_classes, in_chans=chans)


def _param_bytes(model) -> int:
    return sum(p.numel() * 4 for p in model.parameters())


def _saved_bytes(model, x) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).float().logsumexp(1).mean()
    return total


def _inference_bytes(model, x) -> int:
    """The largest two consecutive activations of a forward pass without gradients (a teacher's peak)."""
    sizes = [x.numel() * 4]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel() * 4)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sizes.sort(reverse=True)
    return sum(sizes[:2])


def estimate_peak(spec, amp: bool = True, cache_bytes: int = 0, num_classes: int = 7) -> int:
    """Bytes a run of ``spec`` is expected to hold at its peak on a CUDA device (torch's allocator's view)."""
    t = spec.train
    chans = input_channels(t.pretrained)
    size, batch = spec.data.image_size, t.batch_size
    scale = AMP_ACTIVATIONS if amp else 1.0
    student = _meta_model(spec.model, num_classes, chans)
    x = torch.empty(batch, chans, size, size, device="meta")
    states = OPTIMIZER_STATES.get(t.optimizer, 2)
    total = _param_bytes(student) * (2 + states) + int(_saved_bytes(student, x) * scale)
    teacher_shapes = []
    for teacher in spec.teachers:
        net = _meta_model(teacher.model, num_classes, input_channels(teacher.train.pretrained)).eval()
        tx = torch.empty(batch, input_channels(teacher.train.pretrained), size, size, device="meta")
        total += _param_bytes(net) + int(_inference_bytes(net, tx) * scale)
        teacher_shapes.append(model_shape(net))
    if spec.kind == "kd":  # what the method adds: adapters, the teacher's feature maps, CRD's negatives
        total += method_extra_bytes(spec.kd, model_shape(student), teacher_shapes, batch, size, states)
    return int(total + cache_bytes)
