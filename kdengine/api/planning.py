"""Planning a study's seeds: ``kdengine study plan NAME --detect 0.02`` (and kdtui's plan dialog).

How many seeds (and, where the data allow, test images) a study needs for a stated gain to be marked with 80 %
power after the study's correction, from a pilot's finished runs (the variance components of its gains, pooled over
the family's cells, as the tables' power notes have them) or from a stated variance. The arithmetic is shown: the
components, the per-cell level (α/m with Holm over m cells), the standard error at each number of seeds, and the
power there (reports.power: a noncentral t on Satterthwaite's degrees of freedom against t on S − 1). Checked by
simulation in tests/test_planning.py: at the planned seeds the planted gain is marked in 80 % of simulated studies,
within Monte Carlo error.

Part of kdengine.api (no torch).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from ..errors import UsageError
from ..reports import power as P
from ..reports.correction import CORRECTIONS, NAMES
from ..reports.families import pooled, primary_family
from ..reports.groups import study_groups
from ..reports.stats import OVER_IMAGES, Components, number
from ..reports.study import study_axes, study_records, study_tables
from ..store import RunStore
from ..store.lifecycle import QUEUED
from ..store.records import RunRecord
from ..store.status import RunStatus
from .studies import study_record as _study_record

SHOWN_STEPS = 12  # the arithmetic's lines: past this many, the first and the last few


@dataclass
class SeedPlan:
    study: str
    family: str
    detect: float
    correction: str
    cells: int  # the family's tested cells (m)
    alpha: float  # the level one cell is tested at
    components: Components
    source: str  # where the components come from, in words
    images: int  # the test images the plan is at (0: the seeds only)
    seeds: int | None  # the fewest seeds that reach the power; None within reports.power.MAX_SEEDS
    steps: list = field(default_factory=list)  # reports.power.Step, 2 seeds upward
    target: float = P.POWER
    ceiling: float = 1.0  # the power with unboundedly many seeds at these images
    alternatives: list = field(default_factory=list)  # (test images, seeds needed or None) where more are available
    notes: list = field(default_factory=list)

    def text(self) -> str:
        c = self.components
        lines = [f"Plan for study {self.study}: a gain of {number(self.detect, True)} in family {self.family}, marked "
                 f"with {self.target:.0%} power",
                 f"  correction: {NAMES[self.correction]} over {self.cells} cell(s): one gain is tested at "
                 + ("α" if self.correction == "none" or self.cells <= 1 else f"α/{self.cells}")
                 + f" = {self.alpha:.4g} (two-sided)",
                 f"  variance components of a gain ({self.source}):"]
        if self.images:
            lines += [f"    σ²_seed = {max(0.0, c.seed):.3e}, σ²_image = {max(0.0, c.image):.3e}, σ²_residual = "
                      f"{c.residual:.3e} (per seed and test image"
                      + ("; a component estimated below zero counts as 0)" if self.source != "stated" else ")"),
                      "  SE(S, N) = sqrt(σ²_seed/S + σ²_image/N + σ²_residual/(S·N)) at N = "
                      f"{self.images} test images"]
        else:
            lines += [f"    between seeds (the test set fixed): {c.seed:.3e}", "  SE(S) = sqrt(variance/S)"]
        lines += ["  the test: t = gain/SE against t on S − 1 df at that level; power = P(|T| > t_crit) with T a "
                  "noncentral t (noncentrality gain/SE, Satterthwaite's df)",
                  "    seeds      SE        df   t_crit   power"]
        steps = self.steps
        if len(steps) > SHOWN_STEPS:
            steps = steps[:4] + [None] + steps[-(SHOWN_STEPS - 5):]
        for s in steps:
            lines.append("      ..." if s is None else
                         f"    {s.seeds:5d}  {s.se:8.5f}  {s.df:6.1f}  {s.crit:7.3f}  {s.power:6.3f}")
        if self.seeds is not None:
            lines.append(f"  → {self.seeds} seeds" + (f" at {self.images} test images" if self.images else "")
                         + f" (power {self.steps[-1].power:.3f}).")
        else:
            lines.append(f"  → no number of seeds up to {P.MAX_SEEDS} reaches {self.target:.0%}"
                         + (f" at {self.images} test images: the test set's own sampling error (σ²_image/N) caps the "
                            f"power at {self.ceiling:.3f} however many seeds" if self.ceiling < self.target else "")
                         + ".")
        for n, s in self.alternatives:
            lines.append(f"  with {n} test images: " + (f"{s} seeds" if s is not None else
                                                        f"not within {P.MAX_SEEDS} seeds"))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def parse_variance(text: str) -> Components:
    """``seed=1e-4,image=8e-3,residual=0.1`` (a gain's components per seed and test image), or one number (its
    variance between seeds, the test set held fixed)."""
    try:
        if "=" not in text:
            value = float(text)
            parts = {"seed": value}
        else:
            parts = {}
            for item in text.split(","):
                k, _, v = item.partition("=")
                if k.strip() not in ("seed", "image", "residual"):
                    raise ValueError
                parts[k.strip()] = float(v)
    except ValueError:
        raise UsageError(f"the variance takes seed=V,image=V,residual=V (a gain's variance components per seed and "
                         f"test image) or one number (its variance between seeds), got '{text}'",
                         field="variance") from None
    if any(not (v >= 0 and math.isfinite(v)) for v in parts.values()) or not any(parts.values()):
        raise UsageError(f"the variance's components must be finite, at least 0, and not all 0, got '{text}'",
                         field="variance")
    return Components(parts.get("seed", 0.0), parts.get("image", 0.0), parts.get("residual", 0.0))


def _records(store: RunStore, name: str) -> tuple[str, list[RunRecord], dict, dict]:
    """(study name, its runs as records (planned ones not yet in the store as queued), its file, its axes)."""
    record = _study_record(store, name)
    if record is not None:
        _, records = study_records(store, record["name"])
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        return record["name"], records, config, study_axes(record)
    from ..study.expand import expand  # a study not yet in the store: its runs, as planned
    from ..study.schema import load_study  # as above

    study = load_study(name)
    records = [RunRecord(p.run_id, p.spec, RunStatus(QUEUED), None) for p in expand(study)]
    return study.name, records, study.raw, {a.key: list(a.values) for a in study.axes}


def family_size(records: list[RunRecord], family: str, axes: dict) -> int:
    """A strategy family's tested cells as its table will have them: one per teacher, student and settings group."""
    strategy = family.removeprefix("students_").removeprefix("robustness_")
    groups = study_groups(records, list(axes))
    return len({(r.teacher_label, r.model, groups.labels.get(r.run_id, "")) for r in records
                if r.kind == "kd" and r.strategy == strategy})


def _available_images(records: list[RunRecord], images: int, pilot: bool) -> tuple[int | None, str]:
    """The test images the study's data could give (where a cap holds them back), and a note (where the images are
    the pilot's)."""
    data = next((r.spec.data for r in records if r.spec is not None), None)
    if data is None or not images:
        return None, ""
    if getattr(data, "cap_test", None):
        from ..data.config import open_source  # the source's index only: nothing is decoded

        try:
            whole = open_source(replace(data, cap_test=None)).summary()["splits"]["test"]["images"]
        except Exception as exc:  # the data may not be on this machine: the plan stands without it
            return None, f"data.cap_test holds the test set at {images} images; the source could not be read for " \
                         f"its full size ({type(exc).__name__})"
        return whole, f"data.cap_test holds the test set at {images} of the source's {whole} test images"
    if not pilot:
        return None, ""
    return None, (f"the pilot's test set is the source's {images} images; more test images need another source or a "
                  "larger data.test_fraction (at the cost of training images)")


def plan_seeds(store: RunStore, name: str, detect: float, family: str | None = None, variance: str | None = None,
               images: int | None = None, correction: str = "holm", cells: int | None = None,
               target: float = P.POWER) -> SeedPlan:
    """The plan (see the module's note). ``name``: a study in the store (its finished runs are the pilot), or a
    study file or preset (then ``variance`` states what the pilot would have measured)."""
    if not (isinstance(detect, (int, float)) and 0 < abs(detect) < 2 and math.isfinite(detect)):
        raise UsageError(f"the gain to detect must lie in (0, 2), e.g. 0.02 (two points of accuracy), got {detect}",
                         field="detect")
    if correction not in CORRECTIONS:
        raise UsageError(f"the correction must be one of {', '.join(CORRECTIONS)}, got '{correction}'",
                         field="correction")
    if not 0.5 <= target < 1:
        raise UsageError(f"the power must lie in [0.5, 1), got {target}", field="power")
    if images is not None and images < 2:
        raise UsageError(f"the test images must be at least 2, got {images}", field="images")
    if cells is not None and cells < 1:
        raise UsageError(f"the family's cells must be at least 1, got {cells}", field="cells")
    study, records, config, axes = _records(store, name)
    strategies = list(dict.fromkeys(r.strategy for r in records if r.kind == "kd"))
    family = primary_family(family or (config.get("primary") if isinstance(config.get("primary"), str) else "")
                            or (strategies[0] if strategies else ""))
    if not family:
        raise UsageError(f"study {study} has no KD students: there is no gain to plan for")
    notes = []
    if variance is not None:
        comps = parse_variance(variance)
        source = "stated"
        n = images or 0
        if (comps.image or comps.residual) and not n:
            raise UsageError("the stated variance has an images' share, so the plan needs the number of "
                             "test images", field="images")
        m = cells or family_size(records, family, axes)
    else:
        tables = study_tables(store, study) if _study_record(store, name) is not None else None
        tested = [v for t in (tables.tables if tables else []) for row in t.rows for v in row
                  if getattr(v, "family", None) == family and v.tested]
        unique = list({v.key: v for v in tested}.values())
        if not unique:
            raise UsageError(f"study {study} has no finished pilot cells in family {family} (2 seeds of a student "
                             "and its baseline make one): finish a pilot, or state the variance", field="variance")
        kinds = pooled(unique)
        over = [v for v in unique if v.method in OVER_IMAGES]
        comps = kinds.get("images") or kinds["seeds"]
        pilot_n = Counter(v.images for v in over).most_common(1)[0][0] if "images" in kinds else 0
        n = images or pilot_n
        pilot_s = Counter(v.n for v in unique).most_common(1)[0][0]
        source = (f"the pilot's {len(unique)} cell(s) of {family} at {pilot_s} seeds"
                  + (f" × {pilot_n} test images, pooled" if pilot_n else " (over seeds only), pooled"))
        if "images" not in kinds:
            notes.append("the pilot's cells cover the seeds only (no per-image predictions): the plan holds the test "
                         "set fixed, as those intervals do")
        m = cells or max(len(unique), family_size(records, family, axes))
    alpha = P.cell_alpha(correction, m)
    seeds, steps = P.seeds_needed(detect, comps, n, alpha, target)
    ceiling = P.ceiling(detect, comps, n, alpha)
    alternatives = []
    available, note = _available_images(records, n, variance is None and not images)
    if note and (seeds is None or seeds > 3):
        notes.append(note)
    if available and available > n and comps.image + comps.residual > 0:
        sizes = sorted({min(available, n * 2 ** k) for k in range(1, 8)})
        alternatives = [(size, P.seeds_needed(detect, comps, size, alpha, target)[0]) for size in sizes]
    return SeedPlan(study, family, float(detect), correction, m, alpha, comps, source, n, seeds, steps, target, ceiling,
                alternatives, notes)
