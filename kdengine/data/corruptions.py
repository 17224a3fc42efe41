"""Acquisition shifts: what changes between radiographic machines and sites, at five fixed, seeded severities.

In the manner of ImageNet-C (Hendrycks & Dietterich, ICLR 2019): named corruptions, severities 1 (mild) to 5
(severe), fixed parameters, fixed seeds; severity 0 is the clean image, unchanged. They act on the decoded,
letterboxed uint8 grayscale images (a batch ``(B, H, W)``), so an evaluation under shift decodes nothing
again. Every image of every (shift, severity) draws its randomness from its own seed, derived from (seed,
shift, severity, row): the same call gives the same images, whatever the batching.

No torch here: the synthetic generator uses these functions to render images from another "site".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import cv2
import numpy as np

from ..errors import UsageError
from ..options import check_fields, did_you_mean
from ..options import option as _option

SHIFT_VERSION = 1  # bump when a shift or a level changes: stored results carry it
SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    levels: tuple  # the parameter at severities 1..5
    apply: Callable  # (images uint8 (B,H,W) -> float32 (B,H,W) in [0, 255], level, rngs) -> images


def _rngs(seed: int, shift: str, severity: int, rows: np.ndarray) -> list[np.random.Generator]:
    sid = sum(ord(c) * 31**i for i, c in enumerate(shift)) % 2**31
    return [np.random.default_rng([seed, sid, severity, int(r)]) for r in rows]


def _gamma(x, gamma, rngs):
    return 255.0 * (x / 255.0) ** gamma


def _window(x, margin, rngs):
    """A narrower window (VOI LUT): [255m, 255(1-m)] stretched to the full range, the rest clipped."""
    lo, hi = 255.0 * margin, 255.0 * (1.0 - margin)
    return (x - lo) / (hi - lo) * 255.0


def _gaussian_noise(x, sigma, rngs):
    noise = np.stack([r.standard_normal(x.shape[1:], dtype=np.float32) for r in rngs])
    return x + noise * (sigma * 255.0)


def _poisson_noise(x, photons, rngs):
    """Quantum noise: ``photons`` expected counts at full intensity (fewer photons, more noise)."""
    lam = (x / 255.0 + 0.02) * photons
    counts = np.stack([r.poisson(l) for r, l in zip(rngs, lam)]).astype(np.float32)
    return (counts / photons - 0.02) * 255.0


def _blur(x, sigma, rngs):
    sigma = sigma * max(1.0, x.shape[-1] / 128.0)  # pixels up to 128 px; beyond, in proportion
    k = 2 * int(np.ceil(3 * sigma)) + 1  # a kernel that always spans the blur, even at small sizes
    return np.stack([cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
                     for img in x])


def _resolution(x, factor, rngs):
    h, w = x.shape[1:]
    small = (max(1, round(w / factor)), max(1, round(h / factor)))
    return np.stack([cv2.resize(cv2.resize(img, small, interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_LINEAR) for img in x])


def _jpeg(x, quality, rngs):
    out = []
    for img in np.clip(x + 0.5, 0, 255).astype(np.uint8):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img)
    return np.stack(out).astype(np.float32)


def _inversion(x, amount, rngs):
    """MONOCHROME1 shown as MONOCHROME2, partly at the lower severities: a blend towards the negative."""
    return (1.0 - amount) * x + amount * (255.0 - x)


def _collimation(x, border, rngs):
    """Collimator shutters: a black border of ``border`` of the side on each edge, each edge jittered."""
    out = x.copy()
    h, w = x.shape[1:]
    for img, r in zip(out, rngs):
        top, bottom, left, right = (border * r.uniform(0.75, 1.25, size=4) * np.array([h, h, w, w])).astype(int)
        img[:top] = 0
        img[h - bottom:] = 0
        img[:, :left] = 0
        img[:, w - right:] = 0
    return out


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("gamma", "exposure: a darker gamma curve", (1.3, 1.6, 2.0, 2.5, 3.2), _gamma),
    Shift("window", "window/level: a narrower VOI window, the rest clipped", (0.06, 0.12, 0.18, 0.25, 0.32), _window),
    Shift("gaussian_noise", "detector noise, Gaussian (sigma, share of the range)", (0.03, 0.06, 0.09, 0.13, 0.18),
          _gaussian_noise),
    Shift("poisson_noise", "quantum noise, Poisson (photons at full intensity)", (80, 40, 20, 10, 5), _poisson_noise),
    Shift("blur", "blur, Gaussian (sigma in pixels; above 128 px, scaled with the image)", (0.6, 1.0, 1.5, 2.2, 3.0),
          _blur),
    Shift("resolution", "resolution: down-sampled by a factor, then up-sampled", (1.5, 2.0, 3.0, 4.0, 6.0),
          _resolution),
    Shift("jpeg", "JPEG compression (quality)", (70, 45, 30, 18, 8), _jpeg),
    Shift("inversion", "intensity inversion (share of the negative blended in)", (0.2, 0.4, 0.6, 0.8, 1.0),
          _inversion),
    Shift("collimation", "a collimation border (share of each side)", (0.04, 0.08, 0.12, 0.17, 0.23), _collimation),
)}


def apply_shift(images: np.ndarray, shift: str, severity: int, seed: int = 0, rows=None) -> np.ndarray:
    """``images`` (B, H, W) uint8 under ``shift`` at ``severity`` (0: unchanged); uint8 out, same shape.

    ``rows`` (the images' rows in the cache) seed each image's randomness; by default 0..B-1. Colour images
    (B, H, W, 3) take the same shift on each channel, with the same draws (one acquisition, as a sensor's)."""
    images = np.asarray(images)
    if severity == 0:
        return images.copy()
    if images.ndim == 4:
        return np.stack([apply_shift(images[..., c], shift, severity, seed, rows) for c in range(images.shape[-1])],
                        axis=-1)
    s = SHIFTS[shift]
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    out = s.apply(images.astype(np.float32), s.levels[severity - 1], _rngs(seed, shift, severity, rows))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def parse_shifts(text: str | None) -> list[str]:
    if not text or text == "all":
        return list(SHIFTS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in SHIFTS]
    if unknown:
        raise UsageError(f"unknown shift '{unknown[0]}' (shifts: {', '.join(SHIFTS)})"
                         + did_you_mean(unknown[0], SHIFTS))
    return names


def parse_severities(text: str | None) -> list[int]:
    """``1..5``, ``1,3,5`` or ``2``."""
    text = (text or "1..5").strip()
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            values = list(range(lo, hi + 1))
        else:
            values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--severities takes 1..5, 1,3,5 or a number, got '{text}'") from None
    if not values or any(v not in SEVERITIES for v in values):
        raise UsageError(f"--severities must lie in 1..5, got '{text}'")
    return sorted(set(values))


# Another site's machine, as the synthetic generator renders it (``synthetic:site=N``): a fixed mix of shifts.
SITES = {
    1: (("gamma", 1), ("gaussian_noise", 2), ("blur", 2), ("collimation", 1)),
    2: (("window", 2), ("poisson_noise", 2), ("resolution", 2), ("jpeg", 2)),
    3: (("inversion", 5), ("gaussian_noise", 1), ("blur", 1)),
}


def render_site(images: np.ndarray, site: int) -> np.ndarray:
    """Images as another site's machine would have taken them (``SITES``); site 0 is the reference site."""
    if site == 0:
        return images
    out = images
    for name, severity in SITES[site]:
        out = apply_shift(out, name, severity, seed=1000 + site)
    return out


@dataclass(frozen=True)
class ShiftConfig:
    """A study file's ``[shift]``: evaluate every finished run under these shifts once the study has trained."""

    SECTION: ClassVar[str] = "shift"

    shifts: str = _option("all", "comma-separated shifts, or all")
    severities: str = _option("1..5", "1..5, 1,3,5 or one severity")
    seed: int = _option(0, "the shifts' seed", low=0, high=2**32 - 1)
    external: str | None = _option(None, "another dataset with the same classes (another site), e.g. "
                                         "synthetic:seed=7,site=1")

    def __post_init__(self) -> None:
        check_fields(self)
        parse_shifts(self.shifts)
        parse_severities(self.severities)
