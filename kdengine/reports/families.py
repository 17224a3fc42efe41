"""The one place that decides, for every tested cell of every table, its family of tests, its correction, its mark
and its power (no torch); every front end (Markdown, CSV, LaTeX, HTML, kdtui) writes the mark it sets.

**Families: one question each.**

- ``students_<strategy>``: the test-split gains of one strategy's students, over every teacher, student and setting.
  A sweep's gain at each value *is* one of these cells (the same runs): it is tested once, in this family, and
  every table that shows it shows the same mark.
- ``sweep_<axis>`` and ``sweep_best``: each row's held-out choice (the value, or combination, chosen on the other
  seeds' val); ``robustness_<strategy>``: the gains under shift, another outcome; ``attention``: the agreement gains.
- The train and val rows describe, they test nothing (the best epoch was chosen on val).

Each family is corrected on its own (statsmodels' ``multipletests``, :mod:`.correction`): Holm bounds the chance of
any false mark *within* it at 5 %. A study has several families, so over all its tables some false mark is
likelier than that; a study that declares its question (``primary = "normal"`` in the study file) has that family
corrected alone and confirmatory, and every other family's marks labelled exploratory, ``(*)``.

**Power.** Each family's note gives its minimum detectable effect (MDE) at 80 % power at the seeds and images its
cells have, at the level one cell is tested at (α/m for a gain in one cell alone), from the family's own variance
components pooled over its cells (:mod:`.power`). A tested cell without a mark whose interval reaches ±MDE reads
``inconclusive`` (the data cannot tell a gain of that size from none); one whose interval stays within ±MDE reads
``below MDE`` (a gain the design could detect is excluded at 95 %; a smaller one is not). A missing mark is never
silent. (Comparing the interval's *width* with the MDE instead would not look at the cell at all: their ratio is
fixed by the design, 3.92 to 2.80 standard errors with no correction and many seeds, whatever the sample size.)
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from statistics import fmean

from . import power as P
from .correction import NAMES, adjust
from .intervals import StatsOptions, interval_note
from .stats import ALPHA, OVER_IMAGES, SEEDS, Components, Summary, number

MARK, EXPLORATORY_MARK, INCONCLUSIVE, BELOW = "*", "(*)", "inconclusive", "below MDE"


def primary_family(name: str) -> str:
    """``primary = "normal"`` means the normal-KD students' gains: ``students_normal``; a family's own name stands."""
    name = (name or "").strip()
    if not name or name.startswith(("students_", "robustness_", "sweep_")) or name == "attention":
        return name
    return f"students_{name}"


def family_of(t, i: int, j: int) -> str:
    """The family of table ``t``'s tested cell (row i, column j): a sweep's gain at one value is its strategy's
    students' gain (the same cell); every other tested cell is in its own table's family."""
    column = t.columns[j]
    per_value = column.startswith("gain ") and "at best" not in column
    if t.name.startswith("sweep_") and t.name != "sweep_best" and per_value:
        return f"students_{t.rows[i][t.columns.index('strategy')]}"
    return t.name


def _why(family: str) -> str:
    if family.startswith("students_"):
        return ("the test-split gains of this strategy's students over every teacher, student and setting (a sweep's "
                "gain at each value is one of these cells, tested once)")
    if family == "sweep_best":
        return "each row's held-out best combination"
    if family.startswith("sweep_"):
        return ("each row's held-out choice (the gains at each value are tested in their strategy's students_ "
                "family)")
    if family.startswith("robustness_"):
        return "the gains under shift of this strategy's students: another outcome, another question"
    return "the agreement gains (ρ and IoU) of every row"


def pooled(cells: list[Summary]) -> dict[str, Components]:
    """The family's variance components, pooled over its cells, per kind of interval: "images" (over seeds and
    images; per observation) and "seeds" (the per-seed values' variance). Each is the mean of the cells' own
    estimates as they came out (below zero too: the mean of estimates floored at zero would be biased upward),
    floored where a variance is made of it."""
    out = {}
    over = [v.components for v in cells if v.components is not None and v.method in OVER_IMAGES]
    if over:
        out["images"] = Components(fmean(c.seed for c in over), fmean(c.image for c in over),
                                   fmean(c.residual for c in over))
    seeds = [v.components for v in cells if v.components is not None and v.method == SEEDS]
    if seeds:
        out["seeds"] = Components(fmean(c.seed for c in seeds))
    return out


def _mde(v: Summary, comps: dict[str, Components], alpha: float, memo: dict) -> float | None:
    """The family's MDE at this cell's seeds and images (the same for every cell of one design: computed once)."""
    kind = "images" if v.method in OVER_IMAGES else "seeds" if v.method == SEEDS else None
    if kind not in comps:
        return None
    design = (kind, v.n, v.images if kind == "images" else 0)
    if design not in memo:
        memo[design] = P.mde(comps[kind], design[1], design[2], alpha)
    return memo[design]


def mark_of(v: Summary, exploratory: bool) -> str:
    """What a tested cell says: marked; or, unmarked, whether its interval still reaches a gain as large as the
    family's MDE ("inconclusive": it cannot tell such a gain from none) or stays within it ("below MDE": a gain
    the design could detect is excluded at 95%). An unmarked cell is never silent."""
    if v.marked:
        return EXPLORATORY_MARK if exploratory else MARK
    if not (v.tested and v.has_interval and v.mde is not None):
        return ""
    return INCONCLUSIVE if v.hi >= v.mde or v.lo <= -v.mde else BELOW


def finish(tables, opts: StatsOptions) -> None:
    """Decide every table's tested cells (family, adjusted p, MDE, mark) and write each table's notes: what its
    intervals cover, the family it is corrected in and why, and its power."""
    where: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))  # family -> key -> [(t, i, j)]
    for t in tables:
        for i, row in enumerate(t.rows):
            for j, v in enumerate(row):
                if isinstance(v, Summary) and v.tested and v.p is not None:
                    where[family_of(t, i, j)][v.key or (t.name, i, j)].append((t, i, j))
    primary = primary_family(opts.primary)
    facts: dict[str, dict] = {}
    for family, cells in where.items():
        firsts = [places[0][0].rows[places[0][1]][places[0][2]] for places in cells.values()]
        adjusted = adjust([v.p for v in firsts], opts.correction)
        alpha = P.cell_alpha(opts.correction, len(cells))
        comps = pooled(firsts)
        exploratory = bool(primary) and family != primary
        mdes, memo = [], {}
        for (key, places), p_adj in zip(cells.items(), adjusted):
            for t, i, j in places:
                v = replace(t.rows[i][j], p_adj=p_adj, family=family)
                v = replace(v, mde=_mde(v, comps, alpha, memo))
                t.rows[i][j] = replace(v, mark=mark_of(v, exploratory))
                mdes.append((v.mde, v.n, v.images if v.method in OVER_IMAGES else 0))
        facts[family] = {"m": len(cells), "alpha": alpha, "comps": comps, "mdes": mdes, "exploratory": exploratory}
    for t in tables:
        said = [n for n in [interval_note(t)] if n]
        mine = list(dict.fromkeys(family_of(t, i, j) for i, row in enumerate(t.rows) for j, v in enumerate(row)
                                  if isinstance(v, Summary) and v.tested and v.p is not None))
        for family in mine:
            said += [correction_note(opts.correction, family, facts[family], primary),
                     power_note(opts.correction, facts[family])]
        if primary and primary not in where and t is tables[0]:
            said.append(f"primary = \"{opts.primary}\" names no family of these tables (families: "
                        f"{', '.join(where) or 'none yet'}): every family is corrected on its own.")
        t.notes[:0] = [n for n in said if n]


def correction_note(correction: str, family: str, f: dict, primary: str) -> str:
    m = f["m"]
    cells = f"{m} tested cell{'s' if m != 1 else ''}"
    symbol = EXPLORATORY_MARK if f["exploratory"] else MARK
    if correction == "none":
        head = f"{symbol} raw p < {ALPHA:g}, uncorrected over family {family}'s {cells} (--correction none)"
    else:
        head = f"{symbol} p < {ALPHA:g} after {NAMES[correction]} over family {family}'s {cells}"
    text = f"{head}: {_why(family)}; intervals not adjusted."
    if f["exploratory"]:
        return text + (f" Exploratory: the study's primary comparison is {primary}; {EXPLORATORY_MARK} marks a cell "
                       "significant within this family only: a lead to confirm, not a finding.")
    if primary:
        return text + " The study's primary comparison (primary in the study file): corrected alone, confirmatory."
    return text + (" Each family is one question, corrected on its own; with no primary comparison declared "
                   "(primary = \"<strategy>\" in the study file), some false mark somewhere in a study of several "
                   "tables is likelier than 5%.")


def _span(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def power_note(correction: str, f: dict) -> str:
    known = [(d, s, n) for d, s, n in f["mdes"] if d is not None]
    if not known:
        return ("Power: not estimable here (cells with fewer than 2 seeds, or no spread): a missing mark says "
                "nothing; run more seeds.")
    level = "α" if correction == "none" or f["m"] <= 1 else f"α/{f['m']}"
    design = _span([s for _, s, _ in known], str) + " seeds" + (
        f" × {_span([n for _, _, n in known if n], str)} test images" if any(n for _, _, n in known) else "")
    comps = "; ".join(f"seeds {max(0.0, c.seed):.2e}, images {max(0.0, c.image):.2e}, residual {c.residual:.2e} per "
                      "image" if kind == "images" else f"between seeds {c.seed:.2e}" for kind, c in f["comps"].items())
    return (f"Power: at {design}, one gain tested at {level} = {f['alpha']:.4g} is marked with 80% probability if it "
            f"is at least ±{_span([d for d, _, _ in known], number)} (the minimum detectable effect, from this "
            f"family's variance components pooled over its {f['m']} cells: {comps}). A cell without a mark reads "
            f"'{INCONCLUSIVE}' where its interval reaches that far (the data cannot tell such a gain from none), "
            f"'{BELOW}' where it stays within it (a gain this design could detect is excluded at 95%; a smaller one "
            "is not). How many seeds a gain needs: kdengine study plan STUDY --detect GAIN.")
