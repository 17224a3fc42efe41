"""``kdengine runs doctor``: what is wrong in a run store, and what can be mended safely (no torch).

Finds damaged runs, temp files left by killed writes, checkpoints of runs that no longer exist, finished
runs missing their metrics or best checkpoint, interrupted runs, status files that had to be rebuilt,
stale worker records and junk. ``--fix`` does only what loses nothing: it removes temp files and stale
worker records, rewrites a status rebuilt from the event log, and queues interrupted runs again (they
resume from their last finished epoch). Everything else is listed with the command that mends it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..atomic import remove_temp_files, temp_files
from ..data.unreadable import failed_on_unreadable
from ..errors import KDError
from .lifecycle import FAILED, FINISHED, QUEUED, STOPPED
from .runstore import BEST, METRICS, SPEC, STATUS, RunStore, read_json

# kdstudy's own files and folders beside the runs: archived runs, MLflow's default store, exported reports,
# kdtui's screenshots and saved state, the data folder under KDSTUDY_HOME
KNOWN_ROOT = {".lock", ".workers", "studies", ".archive", "mlflow.db", "mlartifacts", "reports", "screenshots",
              ".kdtui", "data"}


@dataclass
class Finding:
    where: str  # a run id, or a path relative to the store
    problem: str
    fix: str  # what --fix does, or the command that mends it
    fixable: bool = False


def examine(store: RunStore) -> list[Finding]:
    root = store.root
    found: list[Finding] = []
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.name in KNOWN_ROOT:
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file():
            found.append(Finding(path.name, "temp file left by a write that was killed", "removed by --fix", True))
        elif not path.is_dir():
            found.append(Finding(path.name, "a file that is not part of the store", "left alone: move it away"))
        elif not (path / SPEC).exists():
            if (path / "checkpoints").is_dir():
                found.append(Finding(path.name, "checkpoints of a run that no longer exists (no spec.json)",
                                     f"left alone: delete {path} if you do not need them"))
            else:
                found.append(Finding(path.name, "a folder that is not a run (no spec.json)", "left alone"))
        else:
            found += _examine_run(store, path.name)
    for sub in (store.workers_dir(), root / "studies"):
        for tmp in temp_files(sub):
            found.append(Finding(str(tmp.relative_to(root)), "temp file left by a write that was killed",
                                 "removed by --fix", True))
    workers = store.workers_dir()
    if workers.is_dir():
        live = {str(w.get("pid")) for w in store.live_workers()}
        for info in workers.glob("worker-*.json"):
            if info.stem.removeprefix("worker-") not in live:
                found.append(Finding(f".workers/{info.name}", "record of a worker that is gone", "removed by --fix",
                                     True))
    return found


def _examine_run(store: RunStore, rid: str) -> list[Finding]:
    d = store.run_dir(rid)
    out = []
    spec = None
    try:
        spec = store.load_spec(rid)
    except KDError as exc:
        out.append(Finding(rid, f"damaged spec.json: {str(exc).removeprefix(f'run {rid}: ')}",
                           f"left alone: delete {d} (or restore spec.json)"))
    status = store.read_status(rid)
    raw = read_json(d / STATUS)
    if not isinstance(raw, dict) or raw.get("state") is None:
        out.append(Finding(rid, f"status.json unreadable; from the evidence it is {status.state}",
                           "status rewritten by --fix", True))
    state = status.state
    if state == FINISHED and not isinstance(read_json(d / METRICS), dict):
        out.append(Finding(rid, "finished, but metrics.json is missing or damaged",
                           f"kdengine runs retry {rid} --force trains it again"))
    if state == FINISHED and not (d / BEST).is_file():
        out.append(Finding(rid, "finished, but its best checkpoint is missing (it cannot teach)",
                           f"kdengine runs retry {rid} --force trains it again"))
    if status.stale:
        out.append(Finding(rid, status.reason, "queued again by --fix (resumes from its last finished epoch)",
                           True))
    if state == QUEUED and spec is not None:
        out += _waiting_on(store, rid, spec)
    for tmp in temp_files(d):
        out.append(Finding(rid, f"temp file {tmp.relative_to(d)} left by a write that was killed",
                           "removed by --fix", True))
    return out


def _waiting_on(store: RunStore, rid: str, spec) -> list[Finding]:
    """A queued student whose teacher failed, was stopped or is gone: no worker trains it until the teacher is
    retried (a worker never retries a failed run by itself), so it would wait for ever without a word."""
    out = []
    for teacher in spec.teachers:
        tid = teacher.run_id
        if not store.exists(tid):
            out.append(Finding(rid, f"waits for its teacher {tid}, which is not in the store",
                               f"left alone: kdengine runs retry {rid} queues the teacher again"))
            continue
        t = store.read_status(tid)
        if t.state in (FAILED, STOPPED):
            why = f" ({t.reason})" if t.reason else ""
            # failed on an unreadable image: retried as it is it fails again
            skip = failed_on_unreadable(t.reason) and not teacher.data.skip_bad
            then = (" --skip-bad (both are queued anew with unreadable images skipped)" if skip
                    else " (then this run trains)")
            out.append(Finding(rid, f"waits for its teacher {tid}, which {t.state}{why}",
                               f"left alone: kdengine runs retry {tid}{then}"))
    return out


def fix(store: RunStore, findings: list[Finding]) -> list[str]:
    """Mend what can be mended without losing anything; return what was done."""
    done = []
    runs = {f.where for f in findings if f.fixable and store.exists(f.where)}
    for rid in sorted(runs):
        d = store.run_dir(rid)
        for tmp in remove_temp_files(d):
            done.append(f"{rid}: removed {tmp.relative_to(d)}")
        status = store.read_status(rid)
        if status.stale and store.requeue(rid):  # also replaces an unreadable status
            done.append(f"{rid}: queued again (interrupted)")
            continue
        raw = read_json(d / STATUS)
        if not isinstance(raw, dict) or raw.get("state") is None:
            store.write_status(rid, status.state, status.reason)
            done.append(f"{rid}: status.json rewritten ({status.state})")
    for f in findings:
        if not f.fixable or store.exists(f.where):
            continue
        path = store.root / f.where
        try:
            path.unlink()
            done.append(f"removed {f.where}")
        except OSError as exc:
            done.append(f"could not remove {f.where}: {exc.strerror}")
    return done


def describe(findings: list[Finding]) -> str:
    if not findings:
        return "the store is healthy"
    width = max(len(f.where) for f in findings)
    return "\n".join(f"{f.where:{width}}  {f.problem}  [{f.fix}]" for f in findings)
