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
    """The map's top region as weights in [0, 1], tie-aware: the k = share-of-the-cells highest cells, a tie at
    the boundary sharing the last places (each tied cell weighs the places left over the cells tied), and never a
    cell at the map's floor. So the region holds exactly k cells' weight whatever the ties (a plateau of tied
    cells no longer makes half the map "top"), and two maps whose non-zero cells do not overlap have disjoint
    regions."""
    flat = np.ravel(np.asarray(a, dtype=np.float64))
    k = max(1, int(math.ceil(share * flat.size)))
    weights = np.zeros(flat.size)
    up = flat > flat.min()
    if up.sum() <= k:
        weights[up] = 1.0
        return weights.reshape(np.shape(a))
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    above = flat > kth
    tied = flat == kth
    weights[above] = 1.0
    weights[tied] = (k - above.sum()) / tied.sum()
    return weights.reshape(np.shape(a))


def top_iou(a: np.ndarray, b: np.ndarray, share: float = TOP_SHARE) -> float | None:
    """Intersection over union of the two maps' top regions (of their weights: Σ min / Σ max); None when either
    map is flat (it has no top)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ma, mb = top_mask(a, share), top_mask(b, share)
    return float(np.minimum(ma, mb).sum() / np.maximum(ma, mb).sum())


def agreement_matrix(teacher: np.ndarray, other: np.ndarray) -> tuple[list, list]:
    """Every pair's agreement: (Spearman, top-20% IoU) of the teacher's map of image i against the other model's
    map of image j, as two n x n nested lists (None where a map is flat). The chance level of agreement is its
    mean over i != j, on whichever images a table keeps."""
    from scipy.stats import rankdata  # scipy: only where maps are compared

    t = np.asarray(teacher, dtype=np.float64).reshape(len(teacher), -1)
    o = np.asarray(other, dtype=np.float64).reshape(len(other), -1)
    flat_t, flat_o = np.ptp(t, axis=1) == 0, np.ptp(o, axis=1) == 0

    def z(x):
        r = rankdata(x, axis=1)
        r -= r.mean(1, keepdims=True)
        norm = np.sqrt((r ** 2).sum(1, keepdims=True))
        return r / np.where(norm > 0, norm, 1.0)
    rho = z(t) @ z(o).T  # Pearson's r of the ranks: Spearman's rho, ties at their mean rank
    wt = np.stack([top_mask(x) for x in t])
    wo = np.stack([top_mask(x) for x in o])
    iou = np.stack([np.minimum(w, wo).sum(1) / np.maximum(w, wo).sum(1) for w in wt])
    bad = flat_t[:, None] | flat_o[None, :]
    as_list = lambda m: [[None if bad[i, j] else round(float(m[i, j]), 4) for j in range(m.shape[1])]  # noqa: E731
                         for i in range(m.shape[0])]
    return as_list(rho), as_list(iou)


def random_maps(n: int, cells: int, size: int, seed: int, rows) -> np.ndarray:
    """A random map per image (uniform at the stage's native cells, upsampled bilinearly as grad-cam's are), seeded
    by the request's seed and the image: what ROAD's chance level is measured with."""
    from scipy.ndimage import zoom  # scipy: only where maps are made

    out = np.empty((n, size, size), np.float32)
    for i, row in enumerate(rows):
        rng = np.random.default_rng([int(seed), int(row), 7])
        cell = rng.random((cells, cells))
        out[i] = zoom(cell, size / cells, order=1, grid_mode=True, mode="nearest")[:size, :size]
    return out


def ranked(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each map's pixels as their ranks in [0, 1], ties broken at random (seeded): the same order as the map, and no
    ties, so a percentile removes exactly its share of the pixels (grad-cam's maps are 0 over much of an image,
    and a tie at a percentile removed all of it or none)."""
    rng = np.random.default_rng(seed)
    out = np.empty(maps.shape, np.float32)
    for i, m in enumerate(maps):
        flat = np.ravel(m)
        order = np.lexsort((rng.random(flat.size), flat))
        r = np.empty(flat.size)
        r[order] = np.arange(flat.size)
        out[i] = (r / max(1, flat.size - 1)).reshape(m.shape)
    return out


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
