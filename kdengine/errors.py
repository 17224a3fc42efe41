"""Errors that the CLI turns into one-line messages, and the exit codes they map to.

Exit codes are a contract (README): 0 done, 1 a run failed (a NaN loss, a crash), 2 bad input or a
bad environment. `KDError` and its subclasses are *expected* failures caused by the user's input or
surroundings (a wrong path, an unknown model, options that do not fit together, a full disk). The
CLI prints them as ``error: <message>`` and exits with code 2.
"""


class KDError(Exception):
    exit_code = 2

    def __init__(self, message: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the option or form field at fault, when there is one


class UsageError(KDError):
    """Options that are invalid or do not fit together."""


class DataError(KDError):
    """Data that is missing, malformed or unusable."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: what it stopped, and how to resume, in its message (the CLI prints it; exit 130)."""


class RunFailed(Exception):
    """A run ended in failure (NaN loss, crash); exit code 1, not a usage error."""

    exit_code = 1
