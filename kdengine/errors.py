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
    """Ctrl-C: what it stopped, as facts (the CLI says them and how to resume; exit 130). The message is the
    executor's word on the run it was training; ``stopped``: runs it had queued, stopped before they started;
    ``waiting``: runs it queued that wait for an unfinished teacher; ``resumable``: runs now stopped or failed that a
    retry resumes; ``elsewhere``: runs still training in other workers; ``study``: the study it was running;
    ``wound_up``: the interrupted command's runs were all wound up so (the front end says how to resume)."""

    def __init__(self, message: str = "", stopped: list[str] | None = None, waiting: list[str] | None = None,
                 resumable: list[str] | None = None, elsewhere: list[str] | None = None,
                 study: str | None = None, wound_up: bool = False) -> None:
        super().__init__(message)
        self.wound_up = wound_up
        self.stopped = stopped or []
        self.waiting = waiting or []
        self.resumable = resumable or []
        self.elsewhere = elsewhere or []
        self.study = study


class RunFailed(Exception):
    """A run ended in failure (NaN loss, crash); exit code 1, not a usage error."""

    exit_code = 1
