"""Device choice and the CUDA fast path (bf16 autocast, channels_last, cudnn.benchmark, pinned memory)."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from ..errors import UsageError


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    loader_workers: int
    pin_memory: bool
    compile: bool = False  # torch.compile the student (CUDA only; CUDA graphs for small batches)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def setup_device(name: str = "auto", loader_workers: int | None = None, compile: bool = False) -> DeviceSetup:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        bf16 = torch.cuda.is_bf16_supported()
        n = loader_workers if loader_workers is not None else min(16, max(1, (os.cpu_count() or 2) - 1))
        return DeviceSetup(torch.device(name), torch.bfloat16 if bf16 else None, True, n, True, compile)
    if name != "cpu":
        raise UsageError(f"unknown device '{name}' (choose auto, cpu or cuda)")
    return DeviceSetup(torch.device("cpu"), None, False, loader_workers or 0, False)
