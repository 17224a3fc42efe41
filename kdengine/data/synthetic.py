"""The embedded default dataset: procedurally generated grayscale "radiographs".

Seven classes named like MURA's body parts. Each class has its own bone-like
topology (long shafts, joints, rows of small segments, clusters of carpal
bones) drawn as X-ray-like additive densities with a bright cortical rim,
then posed (rotation, scale, shift, partial views), laid over soft tissue,
and given contrast changes, blur, noise and an L/R side marker.

"Patients" share anatomy (bone thickness, tissue density, exposure), so that
grouped splits matter. Everything is deterministic from the seed.

``difficulty`` (0..1) widens pose, zoom, partial views, noise and blur; the
default is tuned so that a small CNN at 64 px stays clearly below 100 %
accuracy after a few epochs (see tests/test_synthetic_difficulty.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
NATIVE = 128  # generated resolution; the cache resizes to the training size

# A 5x7 bitmap of the side markers.
_GLYPHS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
}


@dataclass(frozen=True)
class SyntheticConfig:
    images: int = 2100
    difficulty: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 * len(CLASSES) * 3 <= self.images <= 200_000:
            raise ValueError(f"synthetic: images must lie in [{2 * len(CLASSES) * 3}, 200000], got {self.images}")
        if not 0.0 <= self.difficulty <= 1.0:  # NaN fails this too
            raise ValueError(f"synthetic: difficulty must lie in [0, 1], got {self.difficulty}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"synthetic: seed must lie in [0, {2**32 - 1}], got {self.seed}")


# -- primitives: ("seg", (x0, y0), (x1, y1), radius) and ("ell", (cx, cy), (ax, ay), angle) ----

def _seg(p0, p1, r):
    return ("seg", np.asarray(p0, float), np.asarray(p1, float), float(r))


def _ell(c, axes, angle=0.0):
    return ("ell", np.asarray(c, float), np.asarray(axes, float), float(angle))


def _ray(base, angle_deg, lengths, radius, gap, bend, rng):
    """A row of segments (phalanges) starting at ``base``, each slightly bent."""
    prims = []
    p = np.asarray(base, float)
    a = math.radians(angle_deg)
    for k, length in enumerate(lengths):
        d = np.array([math.sin(a), -math.cos(a)])
        q = p + d * length
        prims.append(_seg(p, q, radius * (1.0 - 0.12 * k)))
        p = q + d * gap
        a += math.radians(rng.normal(0, bend))
    return prims


def _template(cls: str, rng: np.random.Generator) -> list:
    """Bones of one class in a [-1, 1] frame (y grows downwards)."""
    j = lambda s=0.04: rng.normal(0, s)  # noqa: E731 - small anatomical jitter
    if cls == "humerus":
        return [
            _seg((j(), -0.70), (j(), 0.62), 0.11 + j(0.01)),
            _ell((0.06 + j(), -0.80), (0.22, 0.20)),
            _ell((j(), 0.72), (0.24, 0.09), j(5)),
        ]
    if cls == "forearm":
        return [
            _seg((-0.13 + j(), -0.90), (-0.08 + j(), 0.90), 0.07),
            _seg((0.13 + j(), -0.90), (0.10 + j(), 0.90), 0.058),
            _ell((-0.12, 0.92), (0.12, 0.06)),
        ]
    if cls == "elbow":
        flex = math.radians(rng.uniform(0, 70))
        d = np.array([math.sin(flex), math.cos(flex)])
        n = np.array([d[1], -d[0]])
        o = np.array([0.0, 0.12])
        return [
            _seg((j(), -1.0), (0.0, -0.05), 0.10),
            _ell((0.0, 0.0), (0.27, 0.10), j(4)),
            _seg(o + 0.08 * n, o + 0.08 * n + 0.95 * d, 0.065),
            _seg(o - 0.09 * n, o - 0.09 * n + 0.95 * d, 0.055),
            _ell(o - 0.10 * n - 0.06 * d, (0.08, 0.10)),
        ]
    if cls == "shoulder":
        return [
            _ell((0.15 + j(), 0.08), (0.28, 0.27)),
            _seg((0.20, 0.30), (0.26 + j(), 1.10), 0.13),
            _ell((-0.20, 0.04), (0.05, 0.22), j(6)),
            _seg((-0.95, -0.55 + j()), (0.35, -0.38 + j()), 0.055),
            _seg((-0.25, -0.20), (-0.85, 0.75), 0.035),
            _seg((-0.25, 0.25), (-0.85, 0.75), 0.03),
        ]
    if cls == "hand":
        prims = [_ell((-0.18 + 0.09 * k + j(0.02), 0.72 + 0.08 * (k % 2)), (0.07, 0.06)) for k in range(6)]
        for i, ang in enumerate(np.linspace(-42, 32, 5) + rng.normal(0, 3, 5)):
            lengths = (0.30, 0.22, 0.16) if i == 0 else (0.42, 0.26, 0.17, 0.12)
            base = (-0.22 + 0.11 * i, 0.62)
            prims += _ray(base, ang, lengths, 0.045, 0.035, 4, rng)
        return prims
    if cls == "finger":
        prims = _ray((j(), 1.05), j(4), (0.40, 0.55, 0.38, 0.28), 0.11, 0.07, 6, rng)
        prims.append(_ell((0.0, -0.80), (0.05, 0.03)))  # the nail tuft
        return prims
    if cls == "wrist":
        prims = [
            _seg((-0.22 + j(), 1.05), (-0.16, 0.40), 0.14),
            _seg((0.22 + j(), 1.05), (0.19, 0.48), 0.09),
        ]
        for row, y in enumerate((0.20, 0.02)):
            for k in range(4):
                prims.append(_ell((-0.24 + 0.16 * k + j(0.02), y + j(0.02)), (0.08, 0.07 - 0.01 * row), j(20)))
        for i in range(5):
            x = -0.28 + 0.14 * i
            prims.append(_seg((x, -0.10), (x + (i - 2) * 0.06, -0.95), 0.05))
        return prims
    raise KeyError(cls)


def _pose(prims: list, angle: float, scale: float, shift: np.ndarray, flip: bool) -> list:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    if flip:
        rot = rot @ np.diag([-1.0, 1.0])
    out = []
    for p in prims:
        if p[0] == "seg":
            out.append(("seg", rot @ p[1] + shift, rot @ p[2] + shift, p[3] * scale))
        else:
            out.append(("ell", rot @ p[1] + shift, p[2] * scale, p[3] + math.degrees(angle)))
    return out


def _density(prim, X, Y, thickness: float, pad: float = 0.0) -> np.ndarray:
    """Bone density of one primitive: a soft-edged body with a brighter cortical rim.

    With ``pad`` > 0 it returns a soft envelope instead (the surrounding soft tissue).
    """
    if prim[0] == "seg":
        p0, p1, r = prim[1], prim[2], prim[3] * thickness
        d = p1 - p0
        t = np.clip(((X - p0[0]) * d[0] + (Y - p0[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
        dist = np.hypot(X - (p0[0] + t * d[0]), Y - (p0[1] + t * d[1])) / max(r, 1e-6)
        scale = r
    else:
        c, axes, ang = prim[1], prim[2] * thickness, math.radians(prim[3])
        ca, sa = math.cos(ang), math.sin(ang)
        dx, dy = X - c[0], Y - c[1]
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        dist = np.hypot(u / axes[0], v / axes[1])
        scale = float(min(axes))
    if pad:
        return np.clip((1 + pad / scale - dist) / (0.6 * pad / scale), 0, 1)
    edge = np.clip((1.0 - dist) * 6.0, 0, 1)
    return edge * (0.55 + 0.45 * np.clip(dist, 0, 1) ** 3)


def _paint(target, prim, X, Y, thickness, pad=0.0, gain=1.0) -> None:
    """Add a bone (or max in its tissue envelope, with ``pad``) inside its bounding box only."""
    if prim[0] == "seg":
        lo = np.minimum(prim[1], prim[2]) - prim[3] * thickness - pad
        hi = np.maximum(prim[1], prim[2]) + prim[3] * thickness + pad
    else:
        reach = float(max(prim[2])) * thickness + pad
        lo, hi = prim[1] - reach, prim[1] + reach
    n = X.shape[0]
    c0, r0 = np.clip(((lo + 1) / 2 * n).astype(int) - 1, 0, n)
    c1, r1 = np.clip(((hi + 1) / 2 * n).astype(int) + 2, 0, n)
    if c1 <= c0 or r1 <= r0:
        return
    box = (slice(r0, r1), slice(c0, c1))
    d = _density(prim, X[box], Y[box], thickness, pad)
    if pad:
        np.maximum(target[box], d, out=target[box])
    else:
        target[box] += gain * d


def _marker(img: np.ndarray, rng: np.random.Generator, level: float) -> None:
    glyph = _GLYPHS[rng.choice(["L", "R"])]
    cell = 2
    h, w = len(glyph) * cell, len(glyph[0]) * cell
    m = 4
    y = m if rng.random() < 0.5 else img.shape[0] - h - m
    x = m if rng.random() < 0.5 else img.shape[1] - w - m
    for r, row in enumerate(glyph):
        for c, bit in enumerate(row):
            if bit == "1":
                img[y + r * cell : y + (r + 1) * cell, x + c * cell : x + (c + 1) * cell] = level


def render(cls: str, rng: np.random.Generator, patient: dict, difficulty: float,
           flags: dict | None = None) -> np.ndarray:
    """One image of class ``cls`` as uint8 (NATIVE x NATIVE); ``flags`` receives what it drew besides the bones
    (orthopaedic hardware, the side marker): the multi-label variant's findings."""
    n = NATIVE
    coords = (np.arange(n) + 0.5) / n * 2 - 1
    X, Y = np.meshgrid(coords, coords)
    prims = _template(cls, rng)
    angle = math.radians(rng.uniform(-1, 1) * (15 + 165 * difficulty))
    scale = rng.uniform(0.75, 1.0) * patient["size"]
    if rng.random() < 0.15 + 0.55 * difficulty:  # a partial, zoomed-in view
        scale *= rng.uniform(1.3, 1.4 + 1.2 * difficulty)
    shift = rng.normal(0, 0.08 + 0.15 * difficulty, 2)
    prims = _pose(prims, angle, scale, shift, rng.random() < 0.5)

    tissue = np.zeros_like(X)
    bone = np.zeros_like(X)
    for p in prims:
        _paint(tissue, p, X, Y, patient["thickness"], pad=0.25)
        _paint(bone, p, X, Y, patient["thickness"])
    hardware = rng.random() < 0.1 + 0.2 * difficulty
    if hardware:  # orthopaedic hardware: a thin metal plate
        p0 = rng.uniform(-0.6, 0.6, 2)
        _paint(bone, _seg(p0, p0 + rng.normal(0, 0.4, 2), 0.025), X, Y, 1.0, gain=1.6)
    img = patient["tissue"] * tissue + patient["bone"] * np.clip(bone, 0, 1.6)
    img += 0.04 * (X * rng.normal() + Y * rng.normal())  # uneven exposure
    sigma = rng.uniform(0.3, 0.6 + 1.6 * difficulty)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma)
    img += rng.normal(0, 0.015 + 0.06 * difficulty, img.shape).astype(np.float32)
    gamma = rng.uniform(0.8, 1.25) * patient["gamma"]
    img = np.clip(img, 0, 1) ** gamma
    lo, hi = rng.uniform(0.0, 0.12), rng.uniform(0.8, 1.0)
    img = np.clip(lo + (hi - lo) * img, 0, 1)
    marker = rng.random() < 0.85
    if marker:
        _marker(img, rng, rng.uniform(0.8, 1.0))
    if flags is not None:
        flags.update(hardware=hardware, marker=marker)
    return (img * 255 + 0.5).astype(np.uint8)


def generate(cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Images, labels and patient ids of the whole synthetic set."""
    rng = np.random.default_rng(cfg.seed)
    per_class = cfg.images // len(CLASSES)
    images, labels, patients, hardware, marker = [], [], [], [], []
    pid = 0
    for label, cls in enumerate(CLASSES):
        made = 0
        while made < per_class:
            patient = {
                "size": rng.uniform(0.85, 1.15),
                "thickness": rng.uniform(0.8, 1.25),
                "tissue": rng.uniform(0.12, 0.3),
                "bone": rng.uniform(0.45, 0.75),
                "gamma": rng.uniform(0.85, 1.2),
            }
            for _ in range(min(int(rng.integers(1, 5)), per_class - made)):
                flags: dict = {}
                images.append(render(cls, rng, patient, cfg.difficulty, flags))
                hardware.append(flags["hardware"])
                marker.append(flags["marker"])
                labels.append(label)
                patients.append(pid)
                made += 1
            pid += 1
    return {
        "images": np.stack(images),
        "labels": np.asarray(labels, np.int64),
        "patients": np.asarray(patients, np.int64),
        "hardware": np.asarray(hardware, bool),
        "marker": np.asarray(marker, bool),
    }


# -- the variants: colour and multi-label, made from the grey set (its images and labels stay what they are) ------
FINDINGS = ("hardware", "side marker", "hand region", "long bone", "joint")
_REGION = {"hand region": ("finger", "hand", "wrist"), "long bone": ("forearm", "humerus"),
           "joint": ("elbow", "shoulder")}
BINARY = ("no hardware", "hardware")


def findings(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 5) 0/1: orthopaedic hardware, a side marker, and the region (hand, long bone, joint) each image shows."""
    cls = np.asarray(CLASSES)[arrays["labels"]]
    cols = [arrays["hardware"], arrays["marker"]] + [np.isin(cls, _REGION[f]) for f in FINDINGS[2:]]
    return np.stack(cols, 1).astype(np.int8)


def uncertain(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """A share ``rate`` of the labels made uncertain (-1), as a radiology report's "possible" would leave them."""
    if rate <= 0:
        return labels
    out = labels.copy()
    out[np.random.default_rng([seed, 11]).random(labels.shape) < rate] = -1
    return out


# per class an RGB stain (each channel's gain): colour says something of the class, as stains and lesions do
_STAINS = np.array([[1.0, 0.55, 0.75], [0.6, 0.6, 1.0], [1.0, 0.85, 0.5], [0.7, 1.0, 0.7], [1.0, 0.6, 0.55],
                    [0.8, 0.7, 1.0], [0.95, 0.95, 0.6]], np.float32)


def colourize(images: np.ndarray, labels: np.ndarray, patients: np.ndarray, seed: int) -> np.ndarray:
    """(N, H, W, 3) uint8: each grey image stained with its class's colour, jittered per patient (as stains vary
    between slides and scanners)."""
    rng = np.random.default_rng([seed, 13])
    jitter = rng.normal(0, 0.08, (int(patients.max()) + 1 if len(patients) else 1, 3)).astype(np.float32)
    gains = np.clip(_STAINS[labels % len(_STAINS)] + jitter[patients], 0.3, 1.2)
    out = images[..., None].astype(np.float32) * gains[:, None, None, :] + 20.0 * (1 - gains[:, None, None, :])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
