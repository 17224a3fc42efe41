"""What is measured on attention maps, in numpy only: the grid every comparison uses, rank agreement, overlap of
the top regions, the share of a map in the image's border band, and which images are explained.

Maps are compared on one GRID x GRID area-averaged grid, whatever the image size: grad-cam returns its map
upsampled to the input, and the last convolutional stage of a ResNet at 224 px is only 7 x 7 cells, so the
full-resolution map holds no more information than the grid, only interpolation.
"""
from __future__ import annotations

import math

import numpy as np

from ..reports.attention import MIN_AGREEMENT_CELLS  # noqa: F401 - the table's rule, which the maps follow

GRID = 32  # the side of the grid maps are stored and compared on
TOP_SHARE = 0.2  # "the top-20% region": the grid's cells with the highest values
BORDER = 0.1  # the border band: this share of the side on each edge (markers, burned-in text, the collimator)
# Below this many cells a side the border share says nothing: a map interpolated from 2 x 2 cells is bilinear, and
# a bilinear map puts exactly the band's area share in any band symmetric about the centre.
MIN_BORDER_CELLS = 3


def to_grid(cam: np.ndarray, side: int = GRID) -> np.ndarray:
    """An (H, W) map as a side x side grid of cell means (H and W need not divide: cells are as even as can be)."""
    cam = np.asarray(cam, dtype=np.float64)
    h, w = cam.shape
    rows = np.linspace(0, h, side + 1).round().astype(int)
    cols = np.linspace(0, w, side + 1).round().astype(int)
    if h >= side and w >= side:  # every cell holds a pixel: sums by cell in two passes
        sums = np.add.reduceat(np.add.reduceat(cam, rows[:-1], axis=0), cols[:-1], axis=1)
        return sums / np.outer(np.diff(rows), np.diff(cols))
    out = np.zeros((side, side))  # a smaller image: a pixel spans several cells
    for i in range(side):
        for j in range(side):
            cell = cam[rows[i]:max(rows[i + 1], rows[i] + 1), cols[j]:max(cols[j + 1], cols[j] + 1)]
            out[i, j] = cell.mean()
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation of two maps' cells (scipy's, ties at their mean rank); None when either map
    is flat (no ranking to compare)."""
    x, y = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr  # scipy: only where maps are compared

    return float(spearmanr(x, y)[0])


def top_mask(a: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """The map's top region, tie-aware: every cell at least as high as the k-th highest (k = share of the cells),
    and above the map's floor. A tie at the boundary takes in every tied cell rather than the first ones in
    raster order, and cells at the minimum (an all-zero background) are never "top": two maps whose non-zero cells
    do not overlap have disjoint top regions."""
    flat = np.ravel(np.asarray(a, dtype=np.float64))
    k = max(1, int(math.ceil(share * flat.size)))
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    return ((flat >= kth) & (flat > flat.min())).reshape(np.shape(a))


def top_iou(a: np.ndarray, b: np.ndarray, share: float = TOP_SHARE) -> float | None:
    """Intersection over union of the two maps' top regions; None when either map is flat (it has no top)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ma, mb = top_mask(a, share), top_mask(b, share)
    return float((ma & mb).sum() / (ma | mb).sum())


def is_flat(a) -> bool:
    """A map with no ranking at all (grad-cam's all-zero map where no activation is positive for the class)."""
    return bool(np.ptp(np.asarray(a, dtype=np.float64)) == 0)


def border_band(side: int, share: float = BORDER) -> np.ndarray:
    width = max(1, int(round(share * side)))
    band = np.ones((side, side), bool)
    band[width:side - width, width:side - width] = False
    return band


def border_mass(a: np.ndarray, share: float = BORDER) -> float | None:
    """The map's share inside the border band (a shortcut indicator: a uniform map has the band's area share,
    :func:`border_area`); None for an all-zero map."""
    a = np.asarray(a, dtype=np.float64)
    total = a.sum()
    return float(a[border_band(a.shape[0], share)].sum() / total) if total > 0 else None


def border_area(side: int = GRID, share: float = BORDER) -> float:
    return float(border_band(side, share).mean())


def balanced_rows(rows: np.ndarray, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n of ``rows``, balanced over classes (round robin over the classes present), fixed by ``seed``: every model
    of one data configuration is explained on the same images."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(rows[labels == c]).tolist() for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < n and any(by_class):
        for pool in by_class:
            if pool and len(chosen) < n:
                chosen.append(pool.pop(0))
    return np.asarray(chosen, dtype=np.int64)
