"""Torch datasets and batches over the decoded cache (the only data module besides tensor_augment that
imports torch).

- Training on the albumentations path: :class:`CachedImages` behind a loader whose processes persist
  for the whole run (``persistent_workers``), each with one OpenCV and one torch thread. The epoch
  travels with every index (:class:`EpochSampler`), so a process that outlives an epoch still draws
  the right views.
- Evaluation has nothing to augment: batches are slices of the memory-mapped cache, no loader at all.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import augment, sample_seed, train_transform
from .cache import DecodedCache


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of one epoch's training samples: a pure function of (seed, epoch), on every input path."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


def channels_first(block: np.ndarray, channels: int) -> np.ndarray:
    """Images (B, S, S) grey or (B, S, S, 3) RGB as the (B, C, S, S) layout a model reads."""
    return block[:, None] if channels == 1 else np.moveaxis(block, -1, 1)


class CachedImages(Dataset):
    """Rows of one split of a :class:`DecodedCache`; item ``(i, epoch)`` -> (uint8 CxHxW tensor, label, i).

    ``i`` is the sample's position in the split. It holds the cache's path, not its array: a loader
    process that unpickles it maps the file itself instead of receiving a copy of the whole cache
    (gigabytes for MURA at 224 px).
    """

    def __init__(self, cache: DecodedCache, split: str, train: bool, seed: int) -> None:
        self.rows = cache.rows(split)
        self.all_labels = cache.labels
        self.channels = cache.channels
        self.size = cache.size
        self.train = train
        self.seed = seed
        self._path, self._shape = cache.path, cache.images.shape
        self._images = cache.images
        self._tf = train_transform(cache.size) if train else None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.memmap(self._path, np.uint8, mode="r", shape=self._shape)
        return self._images

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        return self.all_labels[self.rows]

    def __getitem__(self, item):
        i, epoch = item if isinstance(item, tuple) else (item, 0)
        row = int(self.rows[i])
        img = np.array(self.images[row])  # a writable copy of the memory-mapped row
        if self._tf is not None:
            img = augment(self._tf, img, sample_seed(self.seed, epoch, row))
        x = torch.from_numpy(np.ascontiguousarray(channels_first(img[None], self.channels)[0]))
        label = self.all_labels[row]
        return x, (torch.from_numpy(np.array(label)) if label.ndim else int(label)), i


class EpochSampler(Sampler):
    """Yields ``(position, epoch)`` in the epoch's order; set ``epoch`` before each pass."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch = 0

    def __iter__(self):
        order = epoch_order(self.seed, self.epoch, self.n) if self.shuffle else np.arange(self.n)
        epoch = self.epoch
        return iter([(int(i), epoch) for i in order])

    def __len__(self) -> int:
        return self.n


def _one_thread(_worker_id: int) -> None:
    """Each loader process uses one OpenCV thread (torch's loader already sets one torch thread): N processes,
    not N x cores threads. The processes start from a fork server, not from a fork of the trainer: a forked
    child inherits OpenCV's thread pool in a state it cannot resize (it hangs)."""
    import cv2  # cv2, in the loader process itself

    cv2.setNumThreads(1)


def make_loader(ds: CachedImages, batch_size: int, shuffle: bool = True, workers: int = 0,
                pin_memory: bool = False) -> tuple[DataLoader, EpochSampler]:
    """One loader for a whole run (its processes persist across epochs) and its sampler: set
    ``sampler.epoch`` before iterating. The order and the views depend on (seed, epoch) only."""
    sampler = EpochSampler(len(ds), ds.seed, shuffle)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                        drop_last=False, persistent_workers=workers > 0,
                        worker_init_fn=_one_thread if workers > 0 else None,
                        prefetch_factor=4 if workers > 0 else None,
                        multiprocessing_context="forkserver" if workers > 0 else None)
    return loader, sampler


def eval_batches(images: np.ndarray, rows: np.ndarray, batch_size: int, channels: int = 1):
    """(uint8 (B,C,H,W) array, positions) over ``rows`` in order: slices of the cache, no loader."""
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        if len(chunk) and chunk[-1] - chunk[0] == len(chunk) - 1:  # contiguous rows: one slice, one read
            block = np.array(images[chunk[0]:chunk[-1] + 1])
        else:
            block = np.array(images[chunk])
        yield np.ascontiguousarray(channels_first(block, channels)), np.arange(start, start + len(chunk))


# ImageNet statistics: replicated for 3-channel (pretrained) models, averaged for 1 channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalizer(torch.nn.Module):
    """uint8 (or float in [0, 255]) (B,1,H,W) or (B,3,H,W) on the device -> float (B,C,H,W) normalised; C is 1 or 3
    (grey images are replicated for a 3-channel model: ImageNet weights; colour images keep their channels)."""

    def __init__(self, channels: int, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        if channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            mean, std = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        self.channels = channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
