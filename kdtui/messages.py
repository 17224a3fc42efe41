"""Requests that screens post and the app carries out (screens never call the app's methods directly)."""
from __future__ import annotations

from textual.message import Message


class LaunchRequested(Message):
    """Queue ``spec`` (and its baseline) and make sure a worker will train it."""

    def __init__(self, spec, device: str, with_baseline: bool, runs_per_gpu: str = "1") -> None:
        super().__init__()
        self.spec = spec
        self.device = device
        self.with_baseline = with_baseline
        self.runs_per_gpu = runs_per_gpu


class StopRequested(Message):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class ExportRequested(Message):
    """Write the tables of all runs (``study`` None) or of one study."""

    def __init__(self, study: str | None = None, metric: str = "accuracy", report: bool = False) -> None:
        super().__init__()
        self.study = study
        self.metric = metric
        self.report = report  # the HTML report instead of the tables


class RetryRequested(Message):
    """Queue a failed, stopped or interrupted run again (``force``: a finished run whose results are damaged)."""

    def __init__(self, run_id: str, force: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.force = force


class RemoveRequested(Message):
    """Delete a run's folder (or archive it)."""

    def __init__(self, run_id: str, archive: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.archive = archive
