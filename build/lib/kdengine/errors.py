"""Errors that the CLI turns into one-line messages.

`KDError` and its subclasses are *expected* failures caused by the user's input
(a wrong path, an unknown model, options that do not fit together). The CLI
prints them as ``error: <message>`` and exits with code 2; anything else is a
bug and keeps its traceback.
"""


class KDError(Exception):
    exit_code = 2


class UsageError(KDError):
    """Options that are invalid or do not fit together."""


class DataError(KDError):
    """Data that is missing, malformed or unusable."""


class RunFailed(Exception):
    """A run ended in failure (NaN loss, crash); exit code 1, not a usage error."""

    exit_code = 1
