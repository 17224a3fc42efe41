"""Patient-grouped, class-stratified splits (deterministic from a seed)."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from .source import SplitIndex


def grouped_split(index: SplitIndex, fraction: float, seed: int) -> tuple[SplitIndex, SplitIndex]:
    """Carve ``fraction`` of the images out of ``index`` without splitting a group.

    Each group is assigned to the class most of its images have; per class,
    shuffled groups move to the carved part until it holds ``fraction`` of that
    class's images. Every class with at least two groups keeps at least one
    group on each side. Returns ``(kept, carved)``.
    """
    if fraction <= 0 or len(index) == 0:
        return index, SplitIndex()
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(index.groups):
        members[g].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, rows in sorted(members.items()):
        label = Counter(index.labels[i] for i in rows).most_common(1)[0][0]
        by_class[label].append(g)
    rng = np.random.default_rng(seed)
    carved_groups: set[str] = set()
    for label in sorted(by_class):
        groups = by_class[label]
        order = rng.permutation(len(groups))
        n_images = sum(len(members[g]) for g in groups)
        target = fraction * n_images
        taken = 0
        for k, pos in enumerate(order):
            if taken >= target or (len(groups) > 1 and k == len(groups) - 1):
                break
            g = groups[pos]
            carved_groups.add(g)
            taken += len(members[g])
    kept = [i for i, g in enumerate(index.groups) if g not in carved_groups]
    carved = [i for i, g in enumerate(index.groups) if g in carved_groups]
    return index.subset(kept), index.subset(carved)


def cap_per_class(index: SplitIndex, cap: int | None, seed: int, classes: int = 0) -> SplitIndex:
    """Keep at most ``cap`` images per class (a seeded random choice, order kept). Multi-label labels (tuples over
    ``classes`` findings) have no one class: at most ``cap`` x ``classes`` images are kept, chosen the same way."""
    if not cap:
        return index
    rng = np.random.default_rng(seed)
    if index.labels and isinstance(index.labels[0], tuple):
        total = cap * max(1, classes)
        if len(index) <= total:
            return index
        return index.subset(sorted(rng.choice(len(index), size=total, replace=False).tolist()))
    labels = np.asarray(index.labels)
    keep: list[int] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) > cap:
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        keep.extend(rows.tolist())
    return index.subset(sorted(keep))
