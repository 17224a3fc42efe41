"""Torch datasets and loaders over the decoded cache (the only data module that imports torch)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .augment import augment, sample_seed, train_transform
from .cache import DecodedCache


class CachedImages(Dataset):
    """Rows of one split of a :class:`DecodedCache`; yields (uint8 1xHxW tensor, label, row).

    It holds the cache's path, not its array: a loader worker that unpickles it maps the file
    itself instead of receiving a copy of the whole cache (gigabytes for MURA at 224 px).
    """

    def __init__(self, cache: DecodedCache, split: str, train: bool, seed: int) -> None:
        self.rows = cache.rows(split)
        self.all_labels = cache.labels
        self.size = cache.size
        self.train = train
        self.seed = seed
        self.epoch = 0
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

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        img = np.array(self.images[row])  # a writable copy of the memory-mapped row
        if self._tf is not None:
            img = augment(self._tf, img, sample_seed(self.seed, self.epoch, row))
        return torch.from_numpy(np.ascontiguousarray(img)).unsqueeze(0), int(self.all_labels[row]), row


def make_loader(ds: CachedImages, batch_size: int, epoch: int = 0, shuffle: bool = False,
                workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A loader for one epoch: the order and the views depend on (seed, epoch) only.

    A new loader per epoch carries the epoch number into worker processes.
    """
    ds.epoch = epoch
    order = np.arange(len(ds))
    if shuffle:
        order = np.random.default_rng([ds.seed, epoch, 7]).permutation(len(ds))
    return DataLoader(ds, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                      pin_memory=pin_memory, drop_last=False, persistent_workers=False)


# ImageNet statistics: replicated for 3-channel (pretrained) models, averaged for 1 channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalizer(torch.nn.Module):
    """uint8 (B,1,H,W) on the device -> float (B,C,H,W) normalised; C is 1 or 3 (replicated)."""

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
        if self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
