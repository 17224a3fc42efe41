"""The HTML report of one study, or of every run (no torch)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..store import RunStore
from ..store.records import collect
from .html import write_report
from .study import study_records, study_tables
from .tables import build


def build_report(store: RunStore, study: str | None, metric: str, out: Path, **stats) -> Path:
    """The report of one study (or of every run when ``study`` is None); returns its path."""
    if study:
        _, records = study_records(store, study)
        tables = study_tables(store, study, metric, **stats)
    else:
        records = collect(store)
        tables = build(records, metric, title="kdstudy: every run", **stats)
    if tables.finished == 0:
        raise UsageError("no finished runs to report on yet")
    return write_report(store, tables, records, out)
