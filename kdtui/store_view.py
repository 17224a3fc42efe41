"""How the run list words and orders its rows (``api.RunRow``): the cells, the filter, the sorts and the study
groups (no Textual, no torch: testable on its own)."""
from __future__ import annotations

from kdengine.api import RunRow, State

STATE_ICONS = {State.QUEUED: "…", State.RUNNING: "▶", State.FINISHED: "✓", State.FAILED: "✗", State.STOPPED: "■",
               "damaged": "!"}
SORTS = ("created", "state", "what", "student", "seed", "study", "device", "best val", "test acc", "gain")
NO_STUDY = "(no study)"
# The progress cell while a run is not training: a whole word of at most 5 letters, so that the column never
# widens and never reads as a code ("ev va"); which split is being evaluated is in the line under the list.
PHASES = (("decoding", "load"), ("evaluating", "eval"))


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def study_of(r: RunRow) -> str:
    """The study a row is grouped under: its first, or none."""
    return r.studies[0] if r.studies else NO_STUDY


def who(r: RunRow) -> str:
    return f"{r.teacher} → {r.student}" if r.teacher else r.student


def state_word(r: RunRow) -> str:
    """The state column: a run whose files cannot be read says so (its reason says why) instead of its state."""
    return "damaged" if r.damaged else r.state.value


SHORT = {"teacher+baseline": "teacher/base"}  # the list's words where the column is narrow (Details says it all)


def what_cell(r: RunRow, width: int = 12) -> str:
    """The "what" cell: the run's role and, among look-alike runs (a sweep's points), what sets it apart: the
    point's value is kept whole (normal T=4 → "norm… T=4"), the role gives way."""
    what = SHORT.get(r.what, r.what)
    if not r.point:
        return what[:width]
    point = r.point if len(r.point) < width - 2 else r.point[:width - 3] + "…"
    room = width - len(point) - 1
    return (what if len(what) <= room else what[:max(1, room - 1)] + "…") + " " + point


def epoch_cell(r: RunRow) -> str:
    return f"{r.epoch}/{r.epochs}"


def eta_cell(r: RunRow) -> str:
    return fmt_eta(r.eta_s)


def done_cell(r: RunRow) -> str:
    """The progress cell (5 characters at most): a percentage, or the phase when it says more."""
    if r.state == State.RUNNING and r.phase and not r.phase.startswith("training"):
        word = next((short for prefix, short in PHASES if r.phase.startswith(prefix)), r.phase.split()[0])
        return word if len(word) <= 5 else "busy"  # a phase named later: its own word, or "busy" (never a code)
    return "stop" if r.stopped_early and r.state == State.FINISHED else f"{r.progress:4.0%}"


def row_text(r: RunRow) -> str:
    """Everything a filter matches against."""
    return " ".join([r.run_id, state_word(r), r.what, r.point, who(r), f"seed{r.seed}", r.device, r.phase, *r.studies,
                     r.reason or "", "synthetic" if r.synthetic else ""]).lower()


def arrange(rows: list[RunRow], query: str = "", sort: str = "created", by_study: bool = False,
            reverse: bool = False) -> list[RunRow]:
    """The rows a list shows: those matching every word of ``query``, sorted, optionally grouped by study."""
    words = query.lower().split()
    shown = [r for r in rows if all(w in row_text(r) for w in words)]

    def number(value):  # missing values last, whatever the direction
        return (value is None, -(value or 0))

    keys = {"created": lambda r: r.order, "state": lambda r: (state_word(r), r.order),
            "what": lambda r: (r.what, r.order), "student": lambda r: (r.student, r.order),
            "seed": lambda r: (r.seed if r.seed is not None else -1, r.order),
            "study": lambda r: (study_of(r) == NO_STUDY, study_of(r), r.order), "device": lambda r: (r.device, r.order),
            "best val": lambda r: number(r.best_val), "test acc": lambda r: number(r.test_accuracy),
            "gain": lambda r: number(r.gain)}
    shown.sort(key=keys[sort], reverse=reverse)
    if by_study:
        shown.sort(key=lambda r: (study_of(r) == NO_STUDY, study_of(r)))  # stable: the chosen order holds within a study
    return shown


def groups(rows: list[RunRow]) -> list[tuple[str, list[RunRow]]]:
    """Consecutive rows of one study, with the study's name: the list's group headers."""
    out: list[tuple[str, list[RunRow]]] = []
    for r in rows:
        if out and out[-1][0] == study_of(r):
            out[-1][1].append(r)
        else:
            out.append((study_of(r), [r]))
    return out
