"""Optimisers and learning-rate schedules: name -> builder tables (an unknown name is an error, never a fallback).

The optimisers use PyTorch's fused implementations (one kernel for the whole update: on 2 CPU cores the
Adam step of a resnet18 is 4x faster than the per-parameter loop; the same update rule, other rounding).
A CUDA-graphed step needs an optimiser that can be captured, with its learning rate in a device tensor that the
schedule updates in place: Adam and AdamW fused (one kernel over the parameters; ``capturable=True`` keeps their
step counters on the device), SGD fused. The foreach implementation was capturable too, but makes about ten
passes over the parameters per step (milliseconds for VGG-11's 128 M parameters); fused is also what the eager
path uses, so the graphed and eager updates are the same rule with the same rounding.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import UsageError
from ..runspec import OPTIMIZERS, SCHEDULES


def _lr(t, device: torch.device, graphed: bool):
    return torch.tensor(t.lr, dtype=torch.float32, device=device) if graphed else t.lr


def _adam(cls):
    def build(params, t, device: torch.device, graphed: bool):
        kind = {"capturable": True, "fused": True} if graphed else {"fused": True}
        return cls(params, lr=_lr(t, device, graphed), weight_decay=t.weight_decay, **kind)
    return build


def _sgd(params, t, device: torch.device, graphed: bool):
    return torch.optim.SGD(params, lr=_lr(t, device, graphed), momentum=t.momentum, weight_decay=t.weight_decay,
                           nesterov=False, fused=True)


OPTIMIZER_BUILDERS: dict[str, Callable] = {"adam": _adam(torch.optim.Adam), "adamw": _adam(torch.optim.AdamW),
                                           "sgd": _sgd}
SCHEDULE_BUILDERS: dict[str, Callable] = {
    "constant": lambda opt, t: torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
    "cosine": lambda opt, t: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs),
    "step": lambda opt, t: torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma),
}
assert set(OPTIMIZER_BUILDERS) == set(OPTIMIZERS) and set(SCHEDULE_BUILDERS) == set(SCHEDULES)


def _pick(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        raise UsageError(f"unknown {what} '{name}' (choose {', '.join(table)})") from None


def build_optimizer(params, t, device: torch.device, graphed: bool = False):
    """The optimiser and schedule of a TrainConfig ``t``."""
    opt = _pick(OPTIMIZER_BUILDERS, t.optimizer, "optimizer")(params, t, device, graphed)
    return opt, _pick(SCHEDULE_BUILDERS, t.schedule, "schedule")(opt, t)


# how an optimiser was built: a checkpoint's param groups must not change it (load_state_dict copies them over)
IMPLEMENTATION = ("capturable", "fused", "foreach", "differentiable")


def load_optimizer_state(opt, state: dict) -> None:
    """``opt.load_state_dict(state)`` that keeps what this process built: its implementation flags (a checkpoint
    from an eager run must not turn a graphed run's optimiser uncapturable) and its learning rate **tensor**,
    the one a captured graph reads and the schedule fills (``load_state_dict`` replaces the param groups, so a
    resumed run's rate would otherwise be a CPU tensor from the checkpoint: baked into the graph at capture,
    while the schedule moved another one and the events logged a rate that was never used)."""
    built = [({k: g[k] for k in IMPLEMENTATION if k in g}, g["lr"]) for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, (flags, lr) in zip(opt.param_groups, built):
        loaded = group["lr"]
        value = float(loaded.item() if torch.is_tensor(loaded) else loaded)
        group.update(flags)
        if torch.is_tensor(lr):
            lr.fill_(value)
            group["lr"] = lr
        else:
            group["lr"] = value
        on_device = group.get("capturable") or group.get("fused")
        for p in group["params"]:
            st = opt.state.get(p, {})
            if on_device and torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to(device=p.device, dtype=torch.float32)
