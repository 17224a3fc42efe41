"""A CUDA worker's place on its GPU (packing's admission, with torch), and the hook that records a run shape's
measured peak memory after its first epoch."""
from __future__ import annotations

import os
import socket

import torch

from ..store import RunStore
from ..training.hooks import Hook
from ..training.memory import estimate_peak
from .packing import admits, memory_key, memory_table, need, record_estimate, record_peak


class MemoryPeak(Hook):
    """After a CUDA run's first epoch, record its peak memory for its shape (packing plans with it)."""

    def __init__(self, store: RunStore) -> None:
        self.store, self.done = store, False

    def on_epoch_end(self, trainer, epoch: int, event: dict) -> None:
        if self.done or not trainer.dev.is_cuda:
            return

        record_peak(self.store, memory_key(trainer.spec), torch.cuda.max_memory_allocated(trainer.dev.device))
        self.done = True


class Placement:
    """A CUDA worker's place on its GPU: what each run needs there, and whether it fits now (``packing``)."""

    def __init__(self, store: RunStore, dev) -> None:
        props = torch.cuda.get_device_properties(dev.device)
        uuid = str(getattr(props, "uuid", "") or "")
        self.gpu = uuid or f"{socket.gethostname()}:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')}"
        self.capacity = int(props.total_memory)
        self.store, self.dev = store, dev
        self._needs: dict[str, int] = {}

    def need(self, spec) -> int:
        key = memory_key(spec)
        table = memory_table(self.store)
        value, _ = need(table, key)
        if value is None:
            estimate = estimate_peak(spec, amp=self.dev.amp_dtype is not None)
            record_estimate(self.store, key, estimate)
            value, _ = need({**table, key: {"estimate": estimate}}, key)
        return int(value)

    def admit(self, spec) -> tuple[bool, str]:
        return admits(self.store, self.gpu, self.need(spec), self.capacity)

    def fits(self, spec) -> tuple[bool, str]:
        return self.admit(spec)

    def reservation(self, spec) -> dict:
        return {"gpu": self.gpu, "reserved_bytes": self.need(spec)}
