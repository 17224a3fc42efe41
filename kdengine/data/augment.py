"""Augmentation with albumentations on cached (letterboxed, grayscale) images.

Train: random resized crop, horizontal flip, small rotation, brightness/contrast.
Eval: the cache already holds the image resized and centred, so nothing is done.
Every sample is augmented with its own seed derived from (run seed, epoch, row),
so the same seed gives the same views whatever the loader's worker count.
"""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402


# Bump whenever the views change (a transform, a parameter, the seeding): shared teacher outputs are keyed by it.
AUGMENT_VERSION = 1


def train_transform(size: int) -> A.Compose:
    return A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25)),
            A.HorizontalFlip(p=0.5),
            A.Rotate(limit=10, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        ],
        seed=0,
    )


def sample_seed(seed: int, epoch: int, row: int) -> int:
    """A well-mixed 32-bit seed for one sample of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, row]).generate_state(1)[0])


def augment(tf: A.Compose, image: np.ndarray, seed: int) -> np.ndarray:
    tf.set_random_seed(seed)
    return tf(image=image)["image"]
