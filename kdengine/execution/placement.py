"""A CUDA worker's place on its GPU (packing's admission, with torch), and the hook that records a run shape's
measured peak memory after its first epoch."""
from __future__ import annotations

import os
import socket

import torch

from ..store import RunStore
from ..training.hooks import Hook
from ..training.memory import estimate_peak
from .packing import OOM_ALONE, admits, memory_key, memory_table, need, record_estimate, record_peak


class MemoryPeak(Hook):
    """After each epoch of a CUDA run, record the allocator's peak **reserved** memory for its shape when it grew
    (packing plans with it). Reserved, not allocated: what the card gives up includes fragmentation, the graphs'
    private pool (the partial batch's graph is captured in epoch 2), and evaluation's larger batch."""

    def __init__(self, store: RunStore) -> None:
        self.store, self.recorded = store, 0

    def on_epoch_end(self, trainer, epoch: int, event: dict) -> None:
        self.record(trainer)

    def record(self, trainer) -> None:
        """Record the peak now if it grew: after each epoch, and once more after the run's end (the executor calls
        it: the final evaluation of every split with the best weights may reserve more than any epoch did)."""
        if not trainer.dev.is_cuda:
            return
        peak = int(torch.cuda.max_memory_reserved(trainer.dev.device))
        if peak > self.recorded:
            key = memory_key(trainer.spec, trainer.dev.memory_runtime(trainer.spec.train.batch_size))
            record_peak(self.store, key, peak)
            self.recorded = peak


def resident_bytes(spec, dev) -> int:
    """The device-resident decoded cache a run of ``spec`` holds with --device-input (0 without it, or when the
    cache is over the budget and is gathered on the host): the estimate must count it, up to a quarter of the
    card per process."""
    if not dev.device_input:
        return 0
    from ..data.cache import cached_nbytes  # the data layer: only a device-input worker asks
    from ..training.inputs import device_budget

    budget = device_budget(dev)
    size = cached_nbytes(spec.data)
    if size is None:  # not decoded yet: count what it may take
        return budget
    return size if size <= budget else 0


class Placement:
    """A CUDA worker's place on its GPU: what each run needs there, and whether it fits now (``packing``)."""

    def __init__(self, store: RunStore, dev) -> None:
        props = torch.cuda.get_device_properties(dev.device)
        uuid = str(getattr(props, "uuid", "") or "")
        self.gpu = uuid or f"{socket.gethostname()}:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')}"
        self.capacity = int(props.total_memory)
        self.store, self.dev = store, dev

    def need(self, spec) -> int:
        """Bytes ``spec``'s run needs on this GPU: the whole card for a run that waits for an empty one (sent back
        for memory too often: packing.OOM_ALONE), else its shape's need (measured, else estimated)."""
        if self.store.exists(spec.run_id) and self.store.read_status(spec.run_id).requeued_from == OOM_ALONE:
            return self.capacity
        key = memory_key(spec, self.dev.memory_runtime(spec.train.batch_size))
        table = memory_table(self.store)
        value, _ = need(table, key)
        if value is None:
            estimate = estimate_peak(spec, amp=self.dev.amp_dtype is not None, cache_bytes=resident_bytes(spec, self.dev))
            record_estimate(self.store, key, estimate)
            value, _ = need({**table, key: {"estimate": estimate}}, key)
        return int(value)

    def key(self, spec) -> str:
        return memory_key(spec, self.dev.memory_runtime(spec.train.batch_size))

    def admit(self, spec) -> tuple[bool, str]:
        return admits(self.store, self.gpu, self.need(spec), self.capacity)

    def fits(self, spec) -> tuple[bool, str]:
        return self.admit(spec)

    def reservation(self, spec) -> dict:
        return {"gpu": self.gpu, "reserved_bytes": self.need(spec)}
