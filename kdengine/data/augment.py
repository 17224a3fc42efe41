"""The training augmentation, declared once (:data:`POLICY`), and its two implementations.

Train: random resized crop, horizontal flip, small rotation, brightness/contrast. Eval: the cache
already holds the image resized and centred, so nothing is done.

- **albumentations** (the CPU path, in loader processes): :func:`train_transform` builds the pipeline
  from :data:`POLICY`; each sample is augmented with its own seed from (run seed, epoch, row).
- **batched tensor ops** (the device-resident input, ``data/tensor_augment.py``): :func:`draw_params`
  draws every sample's parameters from :data:`POLICY` with a counter-based hash of (run seed, epoch,
  row) in numpy, so a sample's view never depends on which batch it lands in, nor on the device.

The two give views from the same distribution, not the same pixels: the path is part of the shared
teacher outputs' key (``augment_key``).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

# Bump whenever the views change (a transform, a parameter, the seeding): shared teacher outputs are keyed by it.
# 2: the policy declared once, a tensor implementation beside albumentations (the key names which one).
AUGMENT_VERSION = 2


@dataclass(frozen=True)
class AugmentPolicy:
    """What a training view may be; both implementations read these numbers and nothing else."""

    crop_scale: tuple[float, float] = (0.6, 1.0)  # share of the image's area kept by the crop
    crop_ratio: tuple[float, float] = (0.8, 1.25)  # the crop's width / height (drawn log-uniformly)
    flip_p: float = 0.5  # horizontal flip
    rotate_limit: float = 10.0  # degrees, either way
    rotate_p: float = 0.5
    brightness_limit: float = 0.2  # added: a share of the full range (255)
    contrast_limit: float = 0.2  # the contrast factor is 1 + c
    brightness_contrast_p: float = 0.5


POLICY = AugmentPolicy()

# The columns of draw_params' array, in order.
PARAMS = ("crop_w", "crop_h", "crop_cx", "crop_cy", "flip", "angle", "brightness", "contrast")


def augment_key(backend: str) -> dict:
    """What the training views depend on besides (seed, epoch, row): for the shared teacher outputs' key."""
    return {"version": AUGMENT_VERSION, "backend": backend, "policy": asdict(POLICY)}


def train_transform(size: int, policy: AugmentPolicy = POLICY):
    import albumentations as A  # albumentations and cv2 (0.3 s): only the loader path builds the pipeline
    import cv2

    return A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=policy.crop_scale, ratio=policy.crop_ratio),
            A.HorizontalFlip(p=policy.flip_p),
            A.Rotate(limit=policy.rotate_limit, border_mode=cv2.BORDER_CONSTANT, fill=0, p=policy.rotate_p),
            A.RandomBrightnessContrast(brightness_limit=policy.brightness_limit,
                                       contrast_limit=policy.contrast_limit, p=policy.brightness_contrast_p),
        ],
        seed=0,
    )


def sample_seed(seed: int, epoch: int, row: int) -> int:
    """A well-mixed 32-bit seed for one sample of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, row]).generate_state(1)[0])


def augment(tf, image: np.ndarray, seed: int) -> np.ndarray:
    tf.set_random_seed(seed)
    return tf(image=image)["image"]


# -- parameter draws for the tensor path -------------------------------------------------------------------
_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective, well-mixing hash of 64-bit integers (wraps modulo 2**64)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, epoch: int, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) uniforms in [0, 1): stream ``j`` of sample ``row`` in ``epoch`` of run ``seed``.

    A counter-based generator: each number is a hash of (seed, epoch, row, j), so it depends on nothing else."""
    with np.errstate(over="ignore"):
        key = _splitmix64(_splitmix64(np.asarray([seed], np.uint64)) ^ np.asarray([epoch], np.uint64))
        x = _splitmix64(key ^ _splitmix64(np.asarray(rows, np.uint64)))
        cols = [_splitmix64(x ^ np.uint64(j * 0xD1B54A32D192ED03 & 0xFFFFFFFFFFFFFFFF)) for j in range(k)]
    return (np.stack(cols, 1) >> np.uint64(11)).astype(np.float64) / float(2**53)


def draw_params(seed: int, epoch: int, rows: np.ndarray, policy: AugmentPolicy = POLICY) -> np.ndarray:
    """Each sample's view as numbers (columns :data:`PARAMS`), float32, from the policy alone.

    The crop is drawn as torchvision's RandomResizedCrop draws it (area share uniform, aspect ratio
    log-uniform) and then shrunk to fit the image where it would not (instead of redrawing), so it always
    lies inside the image; its centre is uniform over the places it fits. Sizes and centres are fractions
    of the image's side."""
    u = uniforms(seed, epoch, rows, 10)
    scale = policy.crop_scale[0] + u[:, 0] * (policy.crop_scale[1] - policy.crop_scale[0])
    lo, hi = math.log(policy.crop_ratio[0]), math.log(policy.crop_ratio[1])
    ratio = np.exp(lo + u[:, 1] * (hi - lo))
    w = np.minimum(np.sqrt(scale * ratio), 1.0)
    h = np.minimum(np.sqrt(scale / ratio), 1.0)
    cx = w / 2 + u[:, 2] * (1 - w)
    cy = h / 2 + u[:, 3] * (1 - h)
    flip = (u[:, 4] < policy.flip_p).astype(np.float64)
    angle = np.where(u[:, 5] < policy.rotate_p, (2 * u[:, 6] - 1) * policy.rotate_limit, 0.0)
    on = u[:, 7] < policy.brightness_contrast_p
    brightness = np.where(on, (2 * u[:, 8] - 1) * policy.brightness_limit, 0.0)
    contrast = np.where(on, (2 * u[:, 9] - 1) * policy.contrast_limit, 0.0)
    return np.stack([w, h, cx, cy, flip, angle, brightness, contrast], 1).astype(np.float32)
