"""Runs: opening the store, queueing, reading a run (its row, its detail, its facts), acting on runs (stop, retry,
delete or archive) and training in this process. Each returns a typed record; the front ends word it.

Part of kdengine.api (no torch at import: what trains imports the engine when called)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import strategy_catalog as catalog
from ..atomic import write_json
from ..errors import Interrupted, KDError, RunFailed, UsageError
from ..execution.spawn import visible_gpus
from ..models.architectures import APPROX_PARAMS
from ..options import replace_from_assignments
from ..paths import runs_dir
from ..runspec import RunSpec, baseline_of, build_specs
from ..store import RunStore
from ..store.actions import Plan, Removal, actions_for, plan, removal, why_not
from ..store.detail import RunDetail, read_detail
from ..store.doctor import Finding, examine, fix
from ..store.facts import RunFacts, run_facts
from ..store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED, State
from ..store.queue import TeacherPlan, enqueue, teacher_plans
from ..store.records import collect, read_record
from ..store.rows import needs_skip_bad
from ..store.rows import RunRow
from ..store.rows import run_rows as rows_of
from ..store.runstore import METRICS, read_json
from ..store.status import RunStatus
from ..study.registry import study_membership
from .models import model_params

Log = Callable[[str], None]
SETTINGS = ".kdtui"  # where the front ends keep their settings in the store (the launch form's last values)


def _quiet(_msg: str) -> None:
    return None


def open_runs(runs: str | os.PathLike | None = None, write: bool = False) -> RunStore:
    """The run store ``runs`` names (else $KDSTUDY_HOME, else ./runs). A place that is a file, or inside one, or
    (with ``write``) one this user cannot write, is refused in one line whose field is ``runs_dir``."""
    root = runs_dir(runs)
    try:
        if root.exists() and not root.is_dir():
            raise UsageError(f"the runs dir {root} is a file, not a folder", field="runs_dir")
        probe = root if root.exists() else next((p for p in root.parents if p.exists()), None)
    except OSError as exc:
        raise UsageError(f"the runs dir {root} cannot be reached by this user ({exc.strerror.lower()})",
                         field="runs_dir") from None
    if probe is not None and not probe.is_dir():
        raise UsageError(f"the runs dir {root} is inside {probe}, which is a file", field="runs_dir")
    if write and probe is not None and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"the runs dir {root} is not writable by this user", field="runs_dir")
    return RunStore(root)


def resolve_run(store: RunStore, run_id: str) -> str:
    """A run id, or an unambiguous part of one (an error names the field ``run_id``)."""
    if store.exists(run_id):
        return run_id
    ids = store.list_ids()
    matches = [r for r in ids if r.startswith(run_id)] or [r for r in ids if run_id in r]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"'{run_id}' matches {len(matches)} runs ({', '.join(matches[:3])}, ...): give more of the id",
                         field="run_id")
    raise UsageError(f"no run '{run_id}' in {store.root}", field="run_id")


# -- reading runs ---------------------------------------------------------------------------------------------------
def run_rows(store: RunStore, run_ids: Iterable[str] | None = None) -> list[RunRow]:
    """A row per run (``store.rows.RunRow``), in the store's order: what every list of runs shows. ``run_ids``:
    only these (default: every run)."""
    every = collect(store)
    wanted = None if run_ids is None else set(run_ids)
    records = every if wanted is None else [r for r in every if r.run_id in wanted]
    return rows_of(store, records, every, study_membership(store))


def run_detail(store: RunStore, run_id: str, since: RunDetail | None = None) -> RunDetail:
    """One run in full (``store.detail.RunDetail``): its curves, confusion matrix, metrics and warnings. With
    ``since`` (its previous detail), only what its log gained since is read; ``since`` comes back unchanged when
    nothing did."""
    return read_detail(store, run_id, since)


def run_status(store: RunStore, run_id: str) -> RunStatus:
    """Where a run stands, from the best evidence the store holds."""
    return store.read_status(run_id)


def run_header(store: RunStore, run_id: str) -> dict | None:
    """spec.json as written (run id, spec hash, created, describe and the spec), or None where it is unreadable."""
    header = store.read_spec_file(run_id)
    return header if isinstance(header, dict) else None


def facts(store: RunStore, run_id: str) -> RunFacts:
    """What a run is (``store.facts.RunFacts``): data, changed settings, KD settings, teachers, baseline."""
    return run_facts(store, run_id)


def finished_ids(store: RunStore) -> list[str]:
    """The runs that have their final metrics: what the tables are built from (a cheap look, for a poll)."""
    return [r for r in store.list_ids() if (store.run_dir(r) / METRICS).is_file()]


# -- acting on runs ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stopped:
    run_id: str
    was: State  # running: asked to stop (it stops within a heartbeat, its last epoch resumable); queued: stopped now
    now: State
    reason: str | None  # what the run's status now records (a queued run: whether it had started before)
    finishing: bool = False  # running its final evaluation: it finishes, the stop comes too late

    @property
    def stopping(self) -> bool:
        return self.now == RUNNING and not self.finishing


def stop(store: RunStore, run_id: str) -> Stopped:
    """Ask a run to stop: a running run stops within a heartbeat (its last finished epoch stays resumable); a queued
    one stops now."""
    state = store.read_status(run_id).state
    why = why_not("stop", state)
    if why:
        raise UsageError(f"{run_id} is {why}", field="run_id")
    store.request_stop(run_id)
    status = store.read_status(run_id)
    return Stopped(run_id, state, status.state, status.reason, status.finishing)


@dataclass(frozen=True)
class Retried:
    run_id: str
    was: State
    queued: bool  # queued again (it resumes from its last finished epoch); False: it was queued or running already
    trains_again: bool = False  # a finished run whose results were damaged, retried with force: it trains anew
    as_run: str | None = None  # retried with unreadable images skipped: the new run queued in its place
    students: list[tuple[str, str]] = field(default_factory=list)  # (waiting student, its new run) moved with it
    unreadable: bool = False  # it failed on an unreadable image and skips none: unless the file was mended, it fails


def failed_on_unreadable(record) -> bool:
    """A run that failed (or whose teacher failed) because an image could not be read, and skips none: asked again
    as it is, it fails again (``RunRow.unreadable`` says the same to a list)."""
    return record.spec is not None and record.state in (FAILED, STOPPED, QUEUED) and needs_skip_bad(record)


def retry(store: RunStore, run_id: str, force: bool = False, skip_bad: bool = False) -> Retried:
    """Queue a failed, stopped or interrupted run again (it resumes from its last finished epoch); with ``force``,
    also a finished run whose results are damaged (it trains again). A run that failed on unreadable images and
    skips none fails again unless the files were mended: it is queued again all the same, and ``Retried.unreadable``
    says so; with ``skip_bad`` a run with them skipped (a new run, since its images differ) is queued in its place,
    with the students waiting for it."""
    record = read_record(store, run_id)
    state = record.state
    if skip_bad and record.spec is not None and not record.spec.data.skip_bad and state not in (RUNNING, FINISHED):
        return _retry_skipping_bad(store, record)
    if state in (QUEUED, RUNNING):
        return Retried(run_id, state, False)
    why = actions_for(record, force)["retry"]
    if why is not None:  # decided by store.actions, in words both front ends can say (no flag, no key)
        if record.spec is None:
            raise UsageError(f"{run_id} {why} (the store's doctor says more)", field="run_id")
        if record.damage:
            raise UsageError(f"{run_id} is finished but {record.damage}; retrying it with force trains it again",
                             field="force")
        raise UsageError(f"{run_id} is finished; its results stay", field="run_id")
    again = state == FINISHED  # with force, a finished run whose results are damaged: it trains again
    if again:
        (store.run_dir(run_id) / METRICS).unlink(missing_ok=True)
        store.finish(run_id, FAILED, f"retried with force: {record.damage}")
    unreadable = failed_on_unreadable(record)
    if not store.requeue(run_id):
        raise UsageError(f"{run_id} is {store.read_status(run_id).state}: nothing to retry", field="run_id")
    return Retried(run_id, state, True, again, unreadable=unreadable)


def _skipping_bad(spec: RunSpec) -> RunSpec:
    """``spec`` with unreadable images skipped (data.skip_bad), its teachers' too."""
    return replace(spec, data=replace(spec.data, skip_bad=True),
                   teachers=tuple(_skipping_bad(t) for t in spec.teachers))


def _retry_skipping_bad(store: RunStore, record) -> Retried:
    """Queue ``record``'s run with unreadable images skipped, in its place: a new run (skipping images changes what
    it trains on, so its id differs), its teachers likewise; the students queued behind it (waiting for a teacher
    that failed on the same images) move with it, and the runs replaced that were still queued are stopped. A
    study's run is refused: its study asks for its runs by their settings (the study file says skip_bad)."""
    rid = record.run_id
    studies = study_membership(store)
    if studies.get(rid):
        raise UsageError(f"{rid} is a run of study {studies[rid][0]}: set data.skip_bad = true in the study file and "
                         "run the study again (its runs with unreadable images skipped are new runs)",
                         field="study")
    device = record.status.device or "auto"
    twin = _skipping_bad(record.spec)
    enqueue(store, twin, device=device)
    if store.read_status(rid).state == QUEUED:
        store.request_stop(rid)
    students = []
    for sid in store.dependents(rid):
        s = read_record(store, sid)
        if s.spec is None or s.state != QUEUED or studies.get(sid) or s.spec.data.skip_bad:
            continue
        student_twin = _skipping_bad(s.spec)
        enqueue(store, student_twin, device=s.status.device or "auto")
        store.request_stop(sid)
        students.append((sid, student_twin.run_id))
    return Retried(rid, record.state, True, as_run=twin.run_id, students=students)


@dataclass(frozen=True)
class Removed:
    run_id: str
    archived_to: Path | None  # where it was moved; None: deleted


def remove(store: RunStore, run_id: str, archive: bool = False) -> Removed:
    """Delete a run's folder, or move it to ``.archive/``. Never a running run."""
    why = why_not("archive" if archive else "delete", store.read_status(run_id).state)
    if why:
        raise UsageError(f"{run_id} is {why}", field="run_id")
    return Removed(run_id, store.remove(run_id, archive=archive))


def what_goes(store: RunStore, run_id: str) -> Removal:
    """What deleting a run takes with it (``store.actions.Removal``): its size, its checkpoints, its dependents."""
    return removal(store, run_id)


def plan_action(store: RunStore, run_ids: Iterable[str], action: str, force: bool = False) -> Plan:
    """Which of ``run_ids`` an action (stop, retry, delete, archive) applies to, and why the others are skipped:
    the one batch rule for the CLI and kdtui."""
    return plan([read_record(store, rid) for rid in run_ids], action, force)


def doctor(store: RunStore, mend: bool = False) -> tuple[list[Finding], list[str]]:
    """What is wrong in the store (damaged runs, temp files, orphans), and with ``mend`` what was mended of it
    without losing anything: (findings, what was done)."""
    findings = examine(store)
    return findings, (fix(store, findings) if mend and findings else [])


# -- queueing --------------------------------------------------------------------------------------------------------
@dataclass
class Queued:
    run_id: str  # the run asked for
    baseline_id: str | None  # its baseline, when it has one and it was asked for
    runs: list[str] = field(default_factory=list)  # every run this request queued or asked for again, teachers first
    teachers: list[TeacherPlan] = field(default_factory=list)  # which teacher is reused, or why one is trained
    size_warning: str | None = None  # the strategy catalogue's warning: the teacher's size contradicts the strategy
    cuda_elsewhere: bool = False  # queued for CUDA on a machine with none: a CUDA worker elsewhere must take it


def cuda_elsewhere(device: str) -> bool:
    """Runs queued for CUDA on a machine that has none (legitimate: a GPU worker elsewhere serves the store):
    worth a note, so that nobody waits for a local worker that will never take them."""
    return device.startswith("cuda") and not visible_gpus()


def size_warning(spec: RunSpec) -> str | None:
    """The strategy catalogue's warning that a teacher's size contradicts the strategy (reverse KD with a larger
    teacher), for a run that is only queued, where the trainer's would reach the worker's log alone. Counts come
    from the catalogue without torch; a name outside it is counted by timm only where torch is already loaded (the
    CLI), never imported for a warning (kdtui has none: its form says the same from the catalogue)."""
    if spec.kind != "kd" or len(spec.teachers) != 1:
        return None
    names = (spec.teachers[0].model, spec.model)
    if not all(n in APPROX_PARAMS for n in names) and "torch" not in sys.modules:
        return None
    teacher, student = (model_params(n) for n in names)
    return catalog.size_warning(catalog.get(spec.strategy), names[0], teacher, names[1], student) or None


def queue(store: RunStore, spec: RunSpec, with_baseline: bool = True, device: str = "auto") -> Queued:
    """Queue a run (its teachers first) and, for a KD run, its baseline; with what each teacher will be, and
    whether the teacher's size contradicts the strategy."""
    teachers = teacher_plans(store, spec)
    warning = size_warning(spec)
    elsewhere = cuda_elsewhere(device)  # nvidia-smi, asked once
    before = {rid: store.read_status(rid).state for rid in store.list_ids()}
    rid = enqueue(store, spec, device=device)
    baseline = baseline_of(spec) if with_baseline else None
    base_id = enqueue(store, baseline, device=device) if baseline is not None else None
    wanted = [t.run_id for t in _teachers_first(spec)] + [rid] + ([base_id] if base_id else [])
    runs = [r for r in dict.fromkeys(wanted) if store.read_status(r).state == QUEUED and before.get(r) != QUEUED]
    return Queued(rid, base_id, runs, teachers, warning, elsewhere)


def teachers_of(store: RunStore, spec: RunSpec) -> list[TeacherPlan]:
    """For each teacher of ``spec`` (``store.queue.TeacherPlan``): reused, finished first, or trained new (and the
    closest finished run, to distil from instead)."""
    return teacher_plans(store, spec)


def _teachers_first(spec: RunSpec) -> list[RunSpec]:
    out = []
    for t in spec.teachers:
        out += _teachers_first(t) + [t]
    return out


def spec_from_settings(store: RunStore | None, strategy: str, student: str, teachers: Iterable[str], data, train, kd,
                       seed: int, teacher_set: Iterable[str] = (), teacher_set_name: str = "teacher_set") -> RunSpec:
    """The one way from settings to a run's spec, for ``kdengine train``'s flags and kdtui's launch form (a study
    file's runs come through ``study.expand``, on the same ``build_specs``).

    Each teacher is a model name, or the id of a run in ``store`` (then that finished run is the teacher);
    ``teacher_set`` holds ``KEY=VALUE`` items: the teacher's own training settings (``teacher_set_name`` is how
    the front end calls them, for its errors)."""
    resolved = [store.load_spec(t) if store is not None and store.exists(t) else t for t in teachers]
    items = list(teacher_set)
    try:
        teacher_train = replace_from_assignments(train, items, teacher_set_name) if items else None
    except KDError as exc:
        exc.field = exc.field or "teacher_set"  # a form marks the teacher's settings as the field at fault
        raise
    return build_specs(strategy, student, resolved, data, train, kd, seed, teacher_train=teacher_train)


# -- a front end's settings, kept in the store -----------------------------------------------------------------------
def load_settings(store: RunStore, name: str) -> dict[str, Any] | None:
    """A front end's settings kept under ``name`` (kdtui's launch form: its last launched values), or None."""
    kept = read_json(store.root / SETTINGS / f"{name}.json")
    return kept if isinstance(kept, dict) else None


def save_settings(store: RunStore, name: str, values: dict[str, Any]) -> None:
    """Keep a front end's settings under ``name`` (atomically: a reopened front end starts from them)."""
    write_json(store.root / SETTINGS / f"{name}.json", values)


# -- training in this process ----------------------------------------------------------------------------------------
@dataclass
class Trained:
    metrics: dict  # the run's final metrics
    baseline: dict | None  # its baseline's, when one was trained or reused
    baseline_id: str | None = None
    teachers: dict[str, dict] = field(default_factory=dict)  # each teacher's final metrics, by run id


def train(store: RunStore, spec: RunSpec, device: str = "auto", loader_workers: int | None = None,
          fast: dict | None = None, trackers: Iterable[str] = (), with_baseline: bool = True, progress: bool = True,
          log: Log = print) -> Trained:
    """Train what the run needs (its teachers first, reused when finished), the run, then its baseline."""
    baseline = None if not with_baseline else baseline_of(spec)
    mine = [t.run_id for t in _teachers_first(spec)] + [spec.run_id] + ([baseline.run_id] if baseline else [])
    metrics, _ = train_here(store, [spec] + ([baseline] if baseline else []), mine, device, loader_workers, fast,
                            trackers, progress, log)
    teachers = {t.run_id: store.read_metrics(t.run_id) or {} for t in spec.teachers}
    return Trained(metrics[spec.run_id], metrics.get(baseline.run_id) if baseline else None,
                   baseline.run_id if baseline else None, teachers)


def train_here(store: RunStore, specs: list[RunSpec], mine: list[str], device: str = "auto",
               loader_workers: int | None = None, fast: dict | None = None, trackers: Iterable[str] = (),
               progress: bool = True, log: Log = print, study: str | None = None, keep_going: bool = False,
               worker: str | None = None, announce: Callable[[int, RunSpec], str] | None = None,
               before: dict[str, str | None] | None = None) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Train ``specs`` in this process, in order (each one's teachers first, reused when finished): the one loop
    ``kdengine train`` and ``study run`` share. ``mine``: every run this call may touch (ctrl-c leaves them
    resumable, and raises :class:`~kdengine.errors.Interrupted` naming ``study``); ``keep_going``: a failed run is
    noted and the next one trains (a study), else it raises; ``announce(i, spec)``: a line before each run that is
    not finished yet; ``before``: the runs' states before the caller queued them (default: now).
    ({run id: metrics}, failed)"""
    from ..execution.executor import ensure_finished  # torch: this process trains
    from ..tracking.trackers import make_trackers  # torch (TensorBoard's writer): only where a run trains
    from ..training.device import setup_device  # torch

    before = _states(store, mine) if before is None else before
    dev = setup_device(device, loader_workers, **(fast or {}))
    if dev.cuda_graph and not dev.is_cuda:
        log("note: the CUDA graph applies to CUDA runs; on the CPU the step runs eagerly")
    names = list(trackers)
    make_trackers(names)  # fail early on a missing extra
    metrics, failed = {}, []
    extra = {"worker": worker, "requeue": False} if worker else {}
    todo = list(enumerate(specs, start=1))
    try:
        while todo:
            # beside a live worker (kdtui's, another study's) that trains one of these: train the others first,
            # and wait for its run only when nothing else is left
            i, spec = next((job for job in todo if not _busy_elsewhere(store, job[1])), todo[0])
            todo.remove((i, spec))
            if announce is not None:
                if store.exists(spec.run_id) and store.read_status(spec.run_id).state == FINISHED:
                    continue
                log(announce(i, spec))
            try:
                metrics[spec.run_id] = ensure_finished(store, spec, dev, trackers=lambda: make_trackers(names),
                                                       progress=progress, log=log, **extra)
            except (RunFailed, KDError) as exc:
                if not keep_going:
                    raise
                failed.append((spec.run_id, str(exc)))
                log(f"failed: {spec.run_id}: {exc}")
    except KeyboardInterrupt as exc:
        raise interrupted(store, exc, mine, before, study) from None
    return metrics, failed


def _busy_elsewhere(store: RunStore, spec: RunSpec) -> bool:
    """A run (or one of its teachers) another process is training now: this one would only wait for it."""
    return any(store.exists(s.run_id) and store.read_status(s.run_id).state == RUNNING
               for s in (*_teachers_first(spec), spec))


def _states(store: RunStore, run_ids: Iterable[str]) -> dict[str, str | None]:
    return {r: store.read_status(r).state if store.exists(r) else None for r in run_ids}


def interrupted(store: RunStore, exc: KeyboardInterrupt, mine: list[str], before: dict,
                study: str | None = None) -> Interrupted:
    """Ctrl-C stops what the interrupted command started: the run it was training is stopped (resumable); a run
    it queued that depends on an unfinished teacher stays queued, waiting for it; any other run it queued is
    stopped before it starts, so that no other worker trains it behind the interrupted command's back. The
    error holds what was stopped, what waits, what a retry resumes and what else is still running."""
    stopped, waiting = [], []
    for rid in mine:
        if not store.exists(rid) or store.read_status(rid).state != QUEUED or before.get(rid) == QUEUED:
            continue
        teacher = next((t for t in _teachers_first(store.load_spec(rid))
                        if store.read_status(t.run_id).state != FINISHED), None)
        if teacher is not None:
            state = store.read_status(teacher.run_id).state
            store.note_waiting(rid, f"waiting: teacher {teacher.run_id} is {state}; retrying the teacher resumes it")
            waiting.append(rid)
        else:
            store.request_stop(rid)
            stopped.append(rid)
    elsewhere = [rid for rid in mine if store.exists(rid) and store.read_status(rid).state == RUNNING]
    resumable = [rid for rid in mine if store.exists(rid) and store.read_status(rid).state in (STOPPED, FAILED)
                 and before.get(rid) != store.read_status(rid).state]
    return Interrupted(str(exc), stopped, waiting, resumable, elsewhere, study, wound_up=True)
