"""How a failure on an unreadable image says so: the data layer adds the way out to its message, and a run's
recorded reason keeps it, so that a retry (which would fail again) and ``runs doctor`` recognise such a run from
its status alone."""
from __future__ import annotations

FLAG = "--skip-bad"


def way_out(count: int | None = None) -> str:
    """The hint a failure on unreadable images ends with."""
    return f"(use {FLAG} to skip " + (f"the {count} unreadable image(s))" if count is not None
                                      else "unreadable images)")


def failed_on_unreadable(reason: str | None) -> bool:
    """Whether a failure's reason is an image that could not be read."""
    return FLAG in (reason or "")
