"""The strategies, as data: the one registry every caller reads (no torch).

CLI choices, run-spec validation, the study schema, the launch form, the reports and the
tables all read :data:`CATALOGUE`, and nothing outside it branches on a strategy's name: callers
ask it (``teacher_source``, ``max_teachers``, ``teacher_label``, ``temperature``). A strategy says *who* teaches; *how*
the student learns from that teacher is the run's method (``method_catalog``: Hinton's KD by default,
DKD, DIST, FitNet, ...), a separate axis. Adding a strategy is one entry here, and a test.

A *teacher regime* says how a teacher network was trained: ``normal`` (cross-entropy to the
end) or ``defective`` (stopped when its val accuracy first reaches ``kd.defect_acc``). A
teacher is a cross-entropy run with a regime; a KD student is a run with a strategy.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

REGIMES = {
    "normal": "trained with cross-entropy to the end",
    "defective": "stopped when its val accuracy first reaches the defect threshold",
}


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str
    description: str
    min_teachers: int  # teacher networks the user names
    max_teachers: int | None  # None: no upper bound
    teacher_regime: str | None  # how its teacher networks are trained; None: no teacher network
    teacher_source: str  # "given" (named by the user), "self" (a copy of the student), "virtual", "none"
    baseline: bool  # compared with the student trained alone (its baseline run)
    teacher_size: str | None = None  # "larger" / "smaller": warn when the teacher is not
    # the [kd] key that is the loss's softening temperature when its teacher brings its own (tf-reg's virtual teacher:
    # kd.tf_temperature); a run of it then reads no method temperature (kd.temperature, logit standardisation's
    # kd.ls_temperature), so they are not part of its identity. None: the method's temperature
    temperature: str | None = None

    @property
    def distills(self) -> bool:
        """True for KD runs; False for the plain cross-entropy strategy."""
        return self.teacher_source != "none"

    @property
    def takes_teachers(self) -> bool:
        return self.max_teachers is None or self.max_teachers > 0

    @property
    def joint_teachers(self) -> bool:
        """Several teachers teach one student together (a study block's teachers are one set, not pairs)."""
        return self.max_teachers is None or self.max_teachers > 1

    def teacher_label(self, teacher_models: list[str], student: str) -> str:
        """Who teaches, in the tables: the teacher models, the student itself, or a virtual teacher."""
        if self.teacher_source == "self":
            return f"{student} (self)"
        if self.teacher_source == "virtual":
            return "virtual"
        return "+".join(teacher_models)


CATALOGUE: dict[str, Strategy] = {s.name: s for s in (
    Strategy("baseline", "Baseline", "the student alone, cross-entropy", 0, 0, None, "none", False),
    Strategy("normal", "Normal KD", "a larger teacher, trained normally", 1, 1, "normal", "given",
             True, teacher_size="larger"),
    Strategy("reverse", "Reverse KD", "a smaller teacher, trained normally (Re-KD, Yuan et al. 2020)", 1, 1,
             "normal", "given", True, teacher_size="smaller"),
    Strategy("defective", "Defective KD", "a teacher stopped at the defect threshold (De-KD)", 1, 1, "defective",
             "given", True),
    Strategy("tf-self", "Teacher-free (self)", "a copy of the student, trained normally, teaches it", 0, 0,
             "normal", "self", True),
    Strategy("tf-reg", "Teacher-free (reg.)", "a designed virtual teacher; no teacher network", 0, 0, None,
             "virtual", True, temperature="tf_temperature"),
    Strategy("ensemble", "Ensemble KD", "several teachers together (hinton averages their softened outputs)", 2, None,
             "normal", "given", True),
)}



def names() -> tuple[str, ...]:
    return tuple(CATALOGUE)


def kd_names() -> tuple[str, ...]:
    return tuple(n for n, s in CATALOGUE.items() if s.distills)


def get(name: str) -> Strategy:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UsageError(f"unknown strategy '{name}' (choose {', '.join(names())})", field="strategy") from None


def check_teachers(strategy: Strategy, teachers: list[str]) -> None:
    """One line naming the problem when the number of teachers does not fit the strategy."""
    n = len(teachers)
    if not strategy.takes_teachers and n:
        why = " (its teacher is a copy of the student)" if strategy.teacher_source == "self" else ""
        raise UsageError(f"strategy {strategy.name} takes no --teacher{why}", field="teacher")
    if n < strategy.min_teachers:
        need = "--teacher" if strategy.min_teachers == 1 else f"at least {strategy.min_teachers} teachers"
        raise UsageError(f"strategy {strategy.name} needs {need}", field="teacher")
    if strategy.max_teachers is not None and n > strategy.max_teachers:
        raise UsageError(f"strategy {strategy.name} takes one teacher; use ensemble for several", field="teacher")


def size_warning(strategy: Strategy, teacher: str, teacher_params: int, student: str, student_params: int) -> str:
    """A warning when a teacher's size contradicts the strategy (reverse KD with a larger teacher)."""
    if strategy.teacher_size == "smaller" and teacher_params >= student_params:
        return (f"reverse KD expects a smaller teacher, but {teacher} has {teacher_params:,} parameters "
                f"and the student {student} has {student_params:,}")
    if strategy.teacher_size == "larger" and teacher_params < student_params:
        return (f"normal KD expects a larger teacher, but {teacher} has {teacher_params:,} parameters "
                f"and the student {student} has {student_params:,}")
    return ""
