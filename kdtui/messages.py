"""Requests that screens post and the app carries out, off the UI thread (``KDStudyApp.carry_out``).

Each request is one use case of the store (``carry_out(store)``, run in a worker thread) and says what came of it
in kdtui's own words (``say``, on the UI thread); the app words no outcome itself."""
from __future__ import annotations

from pathlib import Path

from textual.message import Message

from kdengine import api
from kdengine.errors import KDError


class Request(Message):
    """A use case asked of the app; its outcome comes back as :class:`Answered`."""

    failed = ""  # what leads the notification when it fails
    severity = "warning"  # of a failure
    title = ""  # of its notifications

    def carry_out(self, store: api.Store):
        """The use case, in a worker thread: its typed outcome."""
        raise NotImplementedError

    def say(self, outcome) -> str | None:
        """The outcome in a notification (None: nothing to say)."""
        return None

    def after(self, app, outcome) -> None:
        """What the app does next with the outcome, on the UI thread."""


class Answered(Message):
    """What came of a request: its outcome, or the error it raised."""

    def __init__(self, request: Request, outcome=None, error: Exception | None = None) -> None:
        super().__init__()
        self.request = request
        self.outcome = outcome
        self.error = error


class LaunchRequested(Request):
    """Queue ``spec`` (and its baseline) and make sure a worker will train it (``workers``: start one)."""

    failed, severity = "could not launch: ", "error"

    def __init__(self, spec: api.RunSpec, device: str, with_baseline: bool, runs_per_gpu: str = "1",
                 workers: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.device = device
        self.with_baseline = with_baseline
        self.runs_per_gpu = runs_per_gpu
        self.workers = workers

    def carry_out(self, store: api.Store) -> api.Launched:
        return store.launch(self.spec, self.device, self.with_baseline, self.runs_per_gpu, workers=self.workers)

    def say(self, outcome: api.Launched) -> str | None:
        return started(outcome.pids, quiet_when_running=not self.workers)

    def after(self, app, outcome: api.Launched) -> None:
        app.spawned_workers.extend(outcome.pids)
        app.show_run(outcome.queued.run_id)


class TrainingWorkersRequested(Request):
    """Make sure detached workers serve the store (``runs_per_gpu`` per GPU; one on the CPU)."""

    failed, severity = "could not start a worker: ", "error"

    def __init__(self, device: str = "auto", runs_per_gpu: str = "1") -> None:
        super().__init__()
        self.device = device
        self.runs_per_gpu = runs_per_gpu

    def carry_out(self, store: api.Store) -> list[int]:
        return store.start_workers(self.device, self.runs_per_gpu)

    def say(self, pids: list[int]) -> str | None:
        return started(pids)

    def after(self, app, pids: list[int]) -> None:
        app.spawned_workers.extend(pids)


def started(pids: list[int], quiet_when_running: bool = False) -> str | None:
    if pids or not quiet_when_running:
        return f"started worker pid {', '.join(map(str, pids))}" if pids else "a worker is already running"
    return None


class StopRequested(Request):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def carry_out(self, store: api.Store) -> api.Stopped:
        return store.stop(self.run_id)

    def say(self, outcome: api.Stopped) -> str:
        if outcome.finishing:
            return f"{self.run_id}: too late to stop: it is in its final evaluation and finishes when that ends"
        if outcome.stopping:
            return f"{self.run_id}: stopping (it stops within a few seconds; its last finished epoch stays resumable)"
        return f"{self.run_id}: {outcome.reason or outcome.now}"


class RetryRequested(Request):
    """Queue a failed, stopped or interrupted run again (``force``: a finished run whose results are damaged)."""

    def __init__(self, run_id: str, force: bool = False, skip_bad: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.force = force
        self.skip_bad = skip_bad  # it failed on unreadable images: a run with them skipped in its place

    def carry_out(self, store: api.Store) -> tuple[api.Retried, bool]:
        return store.retry(self.run_id, force=self.force, skip_bad=self.skip_bad), bool(store.workers())

    def say(self, outcome: tuple[api.Retried, bool]) -> str:
        retried, workers = outcome
        idle = "" if workers else " (no worker is running: press w)"
        if not retried.queued:
            return f"{self.run_id}: already {retried.was}"
        if retried.as_run:
            return (f"{self.run_id}: {retried.as_run} queued in its place, unreadable images skipped"
                    + "".join(f"; its student {old} moved to {new}" for old, new in retried.students) + idle)
        return (f"{self.run_id}: queued again; it resumes from its last finished epoch"
                + ("; it failed on an unreadable image: unless the file was mended it fails again"
                   if retried.unreadable else "") + idle)


class RemoveRequested(Request):
    """Delete a run's folder (or archive it)."""

    severity = "error"

    def __init__(self, run_id: str, archive: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.archive = archive
        self.failed = f"could not remove {run_id}: "

    def carry_out(self, store: api.Store) -> api.Removed:
        return store.remove(self.run_id, archive=self.archive)

    def say(self, outcome: api.Removed) -> str:
        where = outcome.archived_to
        return f"archived {self.run_id} to\n{shown_path(where)}" if where else f"deleted {self.run_id}"


ACTED = {"stop": "stopped", "retry": "queued again", "delete": "deleted", "archive": "archived"}


class BatchRequested(Request):
    """Stop, retry, delete or archive each of ``run_ids`` that the action applies to (the CLI's batch rule); the
    others are skipped."""

    def __init__(self, action: str, run_ids: list[str]) -> None:
        super().__init__()
        self.action = action
        self.run_ids = run_ids

    def carry_out(self, store: api.Store) -> tuple[int, int]:
        batch = store.plan_action(self.run_ids, self.action)
        done, skipped = 0, len(batch.skipped)
        for rid in batch.apply:
            try:
                if self.action == "stop":
                    store.stop(rid)
                elif self.action == "retry":
                    store.retry(rid)
                else:
                    store.remove(rid, archive=self.action == "archive")
                done += 1
            except (KDError, OSError):
                skipped += 1
        return done, skipped

    def say(self, outcome: tuple[int, int]) -> str:
        done, skipped = outcome
        return f"{ACTED[self.action]} {done} run(s)" + (f"; {skipped} skipped (not in a state for it)"
                                                        if skipped else "")


class ExportRequested(Request):
    """Write the tables of all runs (``study`` None) or of one study into ``path``, or the HTML report (``report``);
    without a path, the app asks for the folder first."""

    severity = "error"

    def __init__(self, study: str | None = None, metric: str = "accuracy", report: bool = False,
                 path: str | None = None, threshold: str = "") -> None:
        super().__init__()
        self.study = study
        self.metric = metric
        self.threshold = threshold  # sensitivity's rule on val, as the screen shows it ("": as each run chose)
        self.report = report  # the HTML report instead of the tables
        self.path = path
        self.failed = "report failed: " if report else "export failed: "
        self.title = "Report" if report else "Export"

    def carry_out(self, store: api.Store):
        out = Path(self.path).expanduser()
        if self.report:
            return store.report(self.study, self.metric, out, threshold=self.threshold)
        return out, store.export_tables(store.tables(self.study, self.metric, threshold=self.threshold), out, "both")

    def say(self, outcome) -> str:
        if self.report:
            return f"wrote the report\n{shown_path(outcome)}"
        out, paths = outcome
        return f"wrote {files_written(paths)} to\n{shown_path(out)}"


def shown_path(path) -> str:
    """A path as a notification shows it, on a line of its own: relative to the working folder when under it,
    else with ~ for the home folder (a toast is at most 90 % of the screen wide, and a path is never broken
    between lines where it fits on one)."""
    path = Path(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.resolve().relative_to(base.resolve())) if path.is_absolute() else str(path)
        except ValueError:
            continue
    return str(path)


FILE_KINDS = {".csv": "CSV", ".md": "Markdown", ".parquet": "Parquet", ".tex": "LaTeX"}


def files_written(paths: list[Path]) -> str:
    """'4 CSV and 4 Markdown files': what an export wrote, exactly."""
    kinds: dict[str, int] = {}
    for p in paths:
        kind = FILE_KINDS.get(p.suffix, p.suffix)
        kinds[kind] = kinds.get(kind, 0) + 1
    return " and ".join(f"{n} {k}" for k, n in kinds.items()) + (" file" if len(paths) == 1 else " files")
