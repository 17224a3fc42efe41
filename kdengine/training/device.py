"""Device choice and the CUDA fast path (bf16 autocast, channels_last, cudnn.benchmark, pinned memory), and
the two input/step switches, off unless asked for or turned on for CUDA runs by ``make gpu-verify
VERIFY_ARGS=--apply`` (where each value comes from: ``kdengine/fast_path.py``):

- ``device_input``: the decoded cache lives on the device (or is gathered into pinned memory when it is
  larger than the device-memory budget) and is augmented there, as batched tensor ops; no loader processes.
- ``cuda_graph``: the training step is captured once as a CUDA graph and replayed for every full batch.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from ..errors import UsageError
from ..fast_path import flag
from ..options import EVAL_BATCH_CUDA


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    loader_workers: int
    pin_memory: bool
    device_input: bool = False
    cuda_graph: bool = False  # CUDA only
    asked: str = ""  # what was asked for (auto, cpu, cuda:1): a run queued here asks for it, not for what auto chose

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def graphed(self) -> bool:
        return self.cuda_graph and self.is_cuda

    def autocast(self, cache: bool = True):
        """bf16 autocast on CUDA; ``cache=False`` inside a captured graph (autocast's weight cache cannot be
        captured)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=cache)

    def eval_batch(self, train_batch: int) -> int:
        """Evaluation's batch size: large on CUDA; on the CPU the training batch (its numbers stay put)."""
        return max(train_batch, EVAL_BATCH_CUDA) if self.is_cuda else train_batch

    def runtime(self) -> dict:
        """The options that shape this process's numbers, for events and the shared teacher outputs' key."""
        return {"input": "device" if self.device_input else "loader", "cuda_graph": self.graphed}

    def memory_runtime(self, train_batch: int) -> dict:
        """What shapes a CUDA run's memory besides its spec (packing's memory key): the input path, the graph,
        the evaluation batch."""
        return {**self.runtime(), "eval_batch": self.eval_batch(train_batch)}


def setup_device(name: str = "auto", loader_workers: int | None = None, device_input: bool | None = None,
                 cuda_graph: bool | None = None) -> DeviceSetup:
    """``device_input`` / ``cuda_graph`` None: from $KDSTUDY_DEVICE_INPUT / $KDSTUDY_CUDA_GRAPH (workers inherit
    them), else on CUDA from the defaults file (``fast_path.flag``)."""
    asked = name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = name.startswith("cuda")
    dev_input, graph = flag(device_input, "device_input", on_cuda), flag(cuda_graph, "cuda_graph", on_cuda)
    if on_cuda:
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        device = torch.device(name)
        if device.index is not None:
            if device.index >= torch.cuda.device_count():
                raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
            # the current device: side streams, the capture stream, events and pinned memory's device follow it
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        bf16 = torch.cuda.is_bf16_supported()
        n = loader_workers if loader_workers is not None else min(16, max(1, (os.cpu_count() or 2) - 1))
        return DeviceSetup(device, torch.bfloat16 if bf16 else None, True, 0 if dev_input else n,
                           not dev_input, dev_input, graph, asked)
    if name != "cpu":
        raise UsageError(f"unknown device '{name}' (choose auto, cpu or cuda)")
    return DeviceSetup(torch.device("cpu"), None, False, 0 if dev_input else (loader_workers or 0), False,
                       dev_input, False, asked)
