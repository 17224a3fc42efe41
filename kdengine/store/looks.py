"""Where a run looks, read from its ``explain.json`` (``kdengine explain``) with no torch and no numpy: the latest
clean maps, and for a KD run the same configuration's maps of its teachers and its baseline, so that a pane can
draw them side by side on the same images."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..runspec import RunSpec, baseline_of
from .runstore import EXPLAIN, RunStore, read_json


@dataclass(frozen=True)
class LookPartner:
    role: str  # teacher or baseline
    model: str
    entry: dict | None  # its maps of the same configuration, when made


@dataclass(frozen=True)
class Looks:
    run_id: str
    slug: str  # the configuration (method, split, images, target, shift) the maps were made with
    entry: dict  # images (thumb, grid, true, pred, border_mass), class_names, key, agreement, border, cells, layer
    partners: list[LookPartner] = field(default_factory=list)  # a KD run's teachers, then its baseline


def _entry(store: RunStore, run_id: str, slug: str | None = None) -> tuple[str, dict] | None:
    doc = read_json(store.run_dir(run_id) / EXPLAIN)
    entries = (doc or {}).get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        return None
    if slug is not None:
        return (slug, entries[slug]) if slug in entries else None
    clean = [(k, e) for k, e in entries.items() if not (e.get("key") or {}).get("shift")]
    return (clean or list(entries.items()))[-1]  # the latest clean maps, else the latest


def read_looks(store: RunStore, run_id: str, spec: RunSpec | None) -> Looks | None:
    """The run's maps, with its partners' (None: no maps yet)."""
    found = _entry(store, run_id)
    if found is None:
        return None
    slug, entry = found
    partners = []
    if spec is not None and spec.kind == "kd":
        for t in spec.teachers:
            partner = _entry(store, t.run_id, slug)
            partners.append(LookPartner("teacher", t.model, partner[1] if partner else None))
        base = baseline_of(spec)
        partner = _entry(store, base.run_id, slug) if base is not None else None
        partners.append(LookPartner("baseline", spec.model, partner[1] if partner else None))
    return Looks(run_id, slug, entry, partners)
