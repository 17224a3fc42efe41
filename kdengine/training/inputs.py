"""Where a run's batches come from, on each input path.

A *feed* yields, per training step, a small dict of tensors already on the device (``raw``), and turns
it into the step's images and labels with :meth:`view`, which is pure tensor work on the device (so a
captured CUDA graph can hold it). ``raw["pos"]`` always holds the samples' positions in the split: the
shared teacher outputs are indexed by it.

- :class:`LoaderFeed` (default): albumentations in persistent loader processes; ``raw`` holds the
  augmented uint8 batch, copied from pinned memory. On the CPU the views are made in the trainer's own
  process, and an epoch made in full is kept for the next run of the same data and seed
  (``data/view_cache.py``: a study's baseline, teacher and students see the same batches).
- :class:`DeviceFeed` (``--device-input``): the decoded cache sits on the device once per process
  (:func:`device_images`) and each step gathers its rows there and augments them as batched tensor ops
  (``data/tensor_augment.py``); ``raw`` holds only positions. When the cache exceeds the device-memory
  budget, a thread gathers each batch from the memory-mapped cache into pinned memory ahead of time,
  and only the augmentation runs on the device.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

import numpy as np
import torch

from ..data import view_cache
from ..data.augment import PARAMS, augment_key, draw_params
from ..data.cache import DecodedCache
from ..data.loader import CachedImages, channels_first, epoch_order, eval_batches, make_loader
from ..data.tensor_augment import TensorAugment

BUDGET_ENV = "KDSTUDY_DEVICE_CACHE_GB"
BUDGET_SHARE = 0.25  # of the card's memory, by default: packed runs each hold their own copy
PREFETCH = 3  # pinned batches in flight on the host-gather path

_RESIDENT: dict[tuple[str, str], torch.Tensor] = {}  # one decoded cache per process and device


def device_budget(dev) -> int:
    """Bytes of device memory the decoded cache may take ($KDSTUDY_DEVICE_CACHE_GB, else a quarter of the card)."""
    env = os.environ.get(BUDGET_ENV)
    if env:
        return int(float(env) * 2**30)
    if dev.is_cuda:
        return int(torch.cuda.get_device_properties(dev.device).total_memory * BUDGET_SHARE)
    return 1 << 62  # on the CPU the "device" is the memory map itself: nothing is copied


def device_images(cache: DecodedCache, dev) -> torch.Tensor | None:
    """The whole decoded cache (every split) as a (N, C, S, S) uint8 tensor on the device, put there once per
    run (:func:`release_resident` after it); None when it is larger than the budget (then batches are gathered on
    the host). The budget is asked first, every time: a copy kept from before never outlives a smaller one."""
    key = (str(cache.path), str(dev.device))
    if cache.images.nbytes > device_budget(dev):
        _RESIDENT.pop(key, None)
        return None
    if key in _RESIDENT:
        return _RESIDENT[key]
    _RESIDENT.clear()  # one dataset at a time: a worker that moves on frees the last one
    if dev.is_cuda:
        images = _chw(torch.from_numpy(np.ascontiguousarray(cache.images)).to(dev.device), cache.channels)
    else:  # a copy-on-write map: a tensor over the file's pages, nothing copied
        cow = np.memmap(cache.path, np.uint8, mode="c", shape=cache.images.shape)
        images = _chw(torch.from_numpy(cow), cache.channels)
    _RESIDENT[key] = images
    return images


def release_resident() -> int:
    """Forget the device-resident caches (after a run: an idle worker must not hold a quarter of the card outside
    the packing ledger, which counts the cache in the run's need only while the run holds it); their bytes."""
    freed = sum(t.numel() * t.element_size() for t in _RESIDENT.values())
    _RESIDENT.clear()
    return freed


def _chw(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, S, S) or (N, S, S, 3) as (N, C, S, S): a view, nothing copied."""
    return images.unsqueeze(1) if channels == 1 else images.permute(0, 3, 1, 2)


def label_tensor(labels: np.ndarray) -> torch.Tensor:
    """Class numbers as int64; a multi-label source's 0/1/-1 per finding as int8 (the task's loss reads both)."""
    return torch.from_numpy(np.ascontiguousarray(labels.astype(np.int64) if labels.ndim == 1 else labels))


class Images:
    """The cache as the device reads it: resident on the device, or gathered from the memory map."""

    def __init__(self, cache: DecodedCache, dev, resident: torch.Tensor | None) -> None:
        self.cache, self.dev, self.resident = cache, dev, resident


def eval_iter(images: Images, rows: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """Evaluation batches (uint8 (B, 1, S, S) on the device), in row order."""
    if images.resident is not None:
        idx = torch.from_numpy(np.asarray(rows, np.int64)).to(images.resident.device)
        for start in range(0, len(rows), batch_size):
            yield images.resident[idx[start:start + batch_size]]
        return
    for block, _ in eval_batches(images.cache.images, rows, batch_size, images.cache.channels):
        t = torch.from_numpy(block)
        yield t.to(images.dev.device) if images.dev.is_cuda else t


class LoaderFeed:
    """albumentations in loader processes that live as long as the run."""

    backend = "albumentations"

    def __init__(self, cache: DecodedCache, seed: int, batch_size: int, dev) -> None:
        self.ds = CachedImages(cache, "train", train=True, seed=seed)
        self.rows = self.ds.rows
        self.dev, self.seed, self.batch_size, self.cache = dev, seed, batch_size, cache
        self.loader, self.sampler = make_loader(self.ds, batch_size, shuffle=True, workers=dev.loader_workers,
                                                pin_memory=dev.pin_memory)
        # The views are made in this very process (no loader processes: the CPU path): the next run of the same
        # data and seed takes them from data/view_cache.py instead of making them again (the same pixels).
        self.shares_views = dev.loader_workers == 0
        self.views_from_cache = 0  # epochs this feed took from the shared views (tests ask)

    def __len__(self) -> int:
        return len(self.rows)

    def epoch(self, epoch: int) -> Iterator[dict]:
        self.sampler.epoch = epoch
        dev = self.dev.device
        batches = self.loader
        if self.shares_views:
            key = view_cache.views_key(self.cache.path, self.rows, self.seed, epoch, self.cache.size,
                                       augment_key(self.backend))
            kept = view_cache.VIEWS.get(key)
            batches = self._from_views(kept[0]) if kept is not None else self._keeping(key)
            self.views_from_cache += kept is not None
        for x, y, pos in batches:
            yield {"x": x.to(dev, non_blocking=True), "y": y.to(dev, non_blocking=True),
                   "pos": pos.to(dev, non_blocking=True)}

    def _from_views(self, views: np.ndarray) -> Iterator[tuple]:
        """The loader's batches (its sampler's order for the epoch set on it, its collated dtypes), sliced from
        the kept views."""
        # Starting an epoch's iterator draws a seed from torch's global generator; the next random op of the step
        # (dropout, drop-path) must see the generator the loader would have left, so the iterator is started.
        iter(self.loader)
        order = np.array([i for i, _ in self.sampler], dtype=np.int64)
        labels = self.ds.labels()
        for s in range(0, len(order), self.batch_size):
            pos = order[s:s + self.batch_size]
            yield (torch.from_numpy(views[pos]), label_tensor(labels[pos]), torch.from_numpy(pos.astype(np.int64)))

    def _keeping(self, key: tuple) -> Iterator[tuple]:
        """The loader's batches, copied into the epoch's views as they pass; kept only if the epoch ran whole."""
        shape = (len(self.rows), self.cache.channels, self.cache.size, self.cache.size)
        if not view_cache.VIEWS.fits(int(np.prod(shape))):
            yield from self.loader
            return
        views, seen = np.empty(shape, np.uint8), 0
        for x, y, pos in self.loader:
            views[pos.numpy()] = x.numpy()
            seen += len(pos)
            yield x, y, pos
        if seen == len(self.rows):
            view_cache.VIEWS.put(key, views)

    def view(self, raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return raw["x"], raw["y"]

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


class DeviceFeed:
    """The decoded cache on the device, augmented there; per step only positions travel."""

    backend = "tensor"

    def __init__(self, cache: DecodedCache, seed: int, batch_size: int, dev, images: Images) -> None:
        self.rows = cache.rows("train")
        self.seed, self.batch_size, self.dev, self.images = seed, batch_size, dev, images
        device = dev.device
        self.rows_dev = torch.from_numpy(self.rows.astype(np.int64)).to(device)
        self.labels = label_tensor(cache.labels).to(device)
        self.augment = TensorAugment(cache.size).to(device)
        # the epoch's parameters, per position in the split: one buffer, refilled in place (a graph reads it)
        self.params = torch.zeros((len(self.rows), len(PARAMS)), dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.rows)

    def epoch(self, epoch: int) -> Iterator[dict]:
        self.params.copy_(torch.from_numpy(draw_params(self.seed, epoch, self.rows)))
        order = epoch_order(self.seed, epoch, len(self.rows))
        order_dev = torch.from_numpy(order.astype(np.int64)).to(self.dev.device)
        starts = range(0, len(order), self.batch_size)
        if self.images.resident is not None:
            for s in starts:
                yield {"pos": order_dev[s:s + self.batch_size]}
            return
        for s, block in zip(starts, self._host_gather(order)):  # larger than the budget: gathered on the host
            yield {"pos": order_dev[s:s + self.batch_size], "x": block}

    def _host_gather(self, order: np.ndarray) -> Iterator[torch.Tensor]:
        """Batches gathered from the memory map into pinned memory by a thread, copied without blocking."""
        gather = HostGather(self.images.cache.images, self.rows, order, self.batch_size, self.dev.is_cuda,
                            self.images.cache.channels)
        self.gather = gather  # the epoch's gatherer (tests ask it whether its thread stopped)
        try:
            for block in gather:
                yield block.to(self.dev.device, non_blocking=True) if self.dev.is_cuda else block
        finally:
            gather.close()

    def view(self, raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
        pos = raw["pos"]
        idx = self.rows_dev[pos]
        x = raw["x"] if "x" in raw else self.images.resident[idx]
        return self.augment(x, self.params[pos]), self.labels[idx]

    def close(self) -> None:
        pass


class HostGather:
    """A thread that gathers an epoch's batches from the memory-mapped cache into pinned memory, PREFETCH ahead.

    ``close()`` (an early stop: the defect threshold reached, a stop request, a failure) sets its stop flag and
    returns once the thread has ended: it checks the flag before every batch and never blocks on a full queue
    for longer than POLL_S, so an epoch stopped early never waits for the rest of it to be gathered.
    """

    POLL_S = 0.05

    def __init__(self, images, rows: np.ndarray, order: np.ndarray, batch_size: int, pin: bool,
                 channels: int = 1) -> None:
        self.images, self.rows, self.order, self.batch_size, self.pin = images, rows, order, batch_size, pin
        self.channels = channels
        self.slots: queue.Queue = queue.Queue(maxsize=PREFETCH)
        self.stop = threading.Event()
        self.gathered = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="host-gather", daemon=True)
        self.thread.start()

    _DONE = object()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.slots.put(item, timeout=self.POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for s in range(0, len(self.order), self.batch_size):
                if self.stop.is_set():
                    return
                rows = self.rows[self.order[s:s + self.batch_size]]
                block = torch.from_numpy(np.ascontiguousarray(channels_first(np.asarray(self.images[rows]),
                                                                             self.channels)))
                # pinned memory from torch's caching host allocator: not reused before its copy is done
                if not self._put(block.pin_memory() if self.pin else block):
                    return
                self.gathered += 1
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            self._put(self._DONE)

    def __iter__(self) -> Iterator[torch.Tensor]:
        while (block := self.slots.get()) is not self._DONE:
            yield block
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
