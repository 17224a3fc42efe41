"""Runs: opening the store, queueing, selecting and describing runs, acting on them (stop, retry, delete),
training one in this process, and the checks before anything is queued.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import strategy_catalog as catalog
from ..errors import Interrupted, KDError, RunFailed, UsageError
from ..models.architectures import APPROX_PARAMS
from ..execution.spawn import visible_gpus
from ..options import identity_values, replace_from_assignments
from ..paths import runs_dir

from ..runspec import RunSpec, baseline_of, build_specs, ce_spec
from ..store import RunStore
from ..store.actions import Plan, actions_for, plan, why_not
from ..store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED
from ..store.doctor import examine, fix
from ..store.queue import enqueue, teacher_notes
from ..store.records import flat_settings, read_record
from ..store.rows import RunRow
from ..store.rows import run_rows as rows_of
from ..study.registry import study_membership
from .models import model_params
from ..store.runstore import METRICS, removal_summary


Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def open_store(runs: str | os.PathLike | None = None, write: bool = False) -> RunStore:
    """The run store ``runs`` names (else $KDSTUDY_HOME, else ./runs). With ``write``, a place this user cannot
    write (a file, a read-only folder, another user's folder) is refused in one line."""
    root = runs_dir(runs)
    try:
        if root.exists() and not root.is_dir():
            raise UsageError(f"the runs dir {root} is a file, not a folder (pass --runs-dir DIR or set KDSTUDY_HOME)")
        probe = root if root.exists() else next((p for p in root.parents if p.exists()), None)
    except OSError as exc:
        raise UsageError(f"the runs dir {root} cannot be reached by this user ({exc.strerror.lower()})") from None
    if probe is not None and not probe.is_dir():
        raise UsageError(f"the runs dir {root} is inside {probe}, which is a file (pass --runs-dir DIR)")
    if write and probe is not None and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"the runs dir {root} is not writable by this user (pass --runs-dir DIR or set KDSTUDY_HOME)")
    return RunStore(root)


def resolve_run(store: RunStore, run_id: str) -> str:
    """A run id, or an unambiguous part of one."""
    if store.exists(run_id):
        return run_id
    ids = store.list_ids()
    matches = [r for r in ids if r.startswith(run_id)] or [r for r in ids if run_id in r]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"'{run_id}' matches {len(matches)} runs ({', '.join(matches[:3])}, ...): give more of the id")
    raise UsageError(f"no run '{run_id}' in {store.root} (kdengine runs list shows them)")


@dataclass
class Queued:
    run_id: str  # the run asked for
    baseline_id: str | None  # its baseline, when it has one and it was asked for
    runs: list[str] = field(default_factory=list)  # every run this request queued or asked for again, teachers first
    notes: list[str] = field(default_factory=list)  # which teacher is reused, or why one is trained


def cuda_elsewhere(device: str) -> str | None:
    """A note when runs are queued for CUDA on a machine that has none (legitimate: a GPU worker elsewhere
    serves the store), so that nobody waits for a local worker that will never take them."""
    if device.startswith("cuda") and not visible_gpus():
        return ("note: no CUDA device on this machine: runs queued for cuda wait for a CUDA worker on another machine "
                "(kdengine worker --device cuda --runs-dir THIS_STORE there); a local worker never takes them")
    return None


def size_note(spec: RunSpec) -> str | None:
    """The trainer's warning that a teacher's size contradicts the strategy (reverse KD with a larger teacher),
    said when a run is only queued, where the trainer's would reach the worker's log alone. Counts come from the
    catalogue without torch; a name outside it is counted by timm only where torch is already loaded (the CLI),
    never imported for a warning (kdtui has none: its form says the same from the catalogue)."""
    if spec.kind != "kd" or len(spec.teachers) != 1:
        return None
    names = (spec.teachers[0].model, spec.model)
    if not all(n in APPROX_PARAMS for n in names) and "torch" not in sys.modules:
        return None
    teacher, student = (model_params(n) for n in names)
    warning = catalog.size_warning(catalog.get(spec.strategy), names[0], teacher, names[1], student)
    return f"warning: {warning}" if warning else None


def queue(store: RunStore, spec: RunSpec, with_baseline: bool = True, device: str = "auto") -> Queued:
    """Queue a run (its teachers first) and, for a KD run, its baseline; say what each teacher will be, and
    whether the teacher's size contradicts the strategy."""
    notes = teacher_notes(store, spec, verb="queueing")
    if note := size_note(spec):
        notes.append(note)
    if note := cuda_elsewhere(device):  # nvidia-smi, asked once
        notes.append(note)
    before = {rid: store.read_status(rid).state for rid in store.list_ids()}
    rid = enqueue(store, spec, device=device)
    baseline = baseline_of(spec) if with_baseline else None
    base_id = enqueue(store, baseline, device=device) if baseline is not None else None
    wanted = [t.run_id for t in _teachers_first(spec)] + [rid] + ([base_id] if base_id else [])
    runs = [r for r in dict.fromkeys(wanted) if store.read_status(r).state == QUEUED and before.get(r) != QUEUED]
    return Queued(rid, base_id, runs, notes)


def _teachers_first(spec: RunSpec) -> list[RunSpec]:
    out = []
    for t in spec.teachers:
        out += _teachers_first(t) + [t]
    return out


def spec_from_settings(store: RunStore | None, strategy: str, student: str, teachers: Iterable[str], data, train, kd,
                       seed: int, teacher_set: Iterable[str] = (), teacher_set_name: str = "--teacher-set") -> RunSpec:
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


def doctor(store: RunStore, mend: bool = False) -> tuple[list, list[str]]:
    """What is wrong in the store (damaged runs, temp files, orphans), and with ``mend`` what was mended of it
    without losing anything: (findings, mended)."""
    findings = examine(store)
    return findings, (fix(store, findings) if mend and findings else [])


def run_rows(store: RunStore, records=None, every=None) -> list[RunRow]:
    """A row per run (``store.rows.RunRow``): what the CLI's list, its JSON and kdtui's list show. ``records``:
    only these (default: every run); ``every``: the store's records, when the caller has read them already."""
    return rows_of(store, records, every, study_membership(store))


def run_facts(store: RunStore, run_id: str) -> list[str]:
    """A run's data (and whether it is synthetic), its settings, its teachers and its baseline, as lines."""
    record = read_record(store, run_id)
    if record.spec is None:
        return [f"damaged: {record.damage}"]
    spec = record.spec
    lines = [f"data: {spec.data.source}" + ("  (SYNTHETIC: generated images, not real radiographs)"
                                           if spec.data.source.startswith("synthetic") else "")]
    flat = flat_settings(spec)
    defaults = flat_settings(ce_spec(spec.model, type(spec.data)(), type(spec.train)(), spec.seed))  # same layout
    changed = [f"{k}={v}" for k, v in flat.items() if k in defaults and defaults[k] != v and k != "data.source"]
    lines.append("settings: " + (", ".join(changed) or "the defaults") + f"; seed {spec.seed}")
    if spec.kd is not None:
        # the KD settings its strategy uses (a teacher's defect threshold is said on its teacher's line)
        lines.append("kd: " + ", ".join(f"{k}={v}" for k, v in
                                        identity_values(spec.kd, spec.strategy, include_teacher_scope=False).items()))
    for t in spec.teachers:
        tm = store.read_metrics(t.run_id) or {}
        acc = tm.get("test", {}).get("accuracy")
        lines.append(f"teacher: {t.run_id} ("
                     + (f"defective: stop at val accuracy {t.defect_acc}; " if t.regime == "defective" else "")
                     + f"{store.read_status(t.run_id).state if store.exists(t.run_id) else 'not in the store'}"
                     + (f", test accuracy {acc:.4f}" if acc is not None else "") + ")")
    if record.baseline_id:
        base = read_record(store, record.baseline_id) if store.exists(record.baseline_id) else None
        text = f"baseline: {record.baseline_id} ({base.state if base is not None else 'not in the store'}"
        if (gain := record.gain_over(base)) is not None:
            text += f", test accuracy {base.accuracy('test'):.4f}; gain {gain:+.4f}"
        lines.append(text + ")")
    return lines


def stop(store: RunStore, run_id: str) -> str:
    """Ask a run to stop: a running run stops within a heartbeat (its last epoch stays resumable); a queued one
    stops now. Returns what happened, in a few words."""
    state = store.read_status(run_id).state
    why = why_not("stop", state)
    if why:
        raise UsageError(f"{run_id} is {why}")
    done = store.request_stop(run_id)
    if done == "stopped":  # a queued run: the store says whether it had started before (its reason)
        return store.read_status(run_id).reason or "stopped"
    if done == "stopping":
        return "stopping (it stops within a few seconds; its last finished epoch stays resumable)"
    return done


def retry(store: RunStore, run_id: str, force: bool = False) -> str:
    """Queue a failed, stopped or interrupted run again (it resumes from its last finished epoch); with
    ``force``, also a finished run whose results are damaged (it trains again). Returns what happened."""
    record = read_record(store, run_id)
    state = record.state
    why = actions_for(record, force)["retry"]
    if state in (QUEUED, RUNNING):
        return f"already {state}"
    if why is not None:  # decided by store.actions, in words both front ends can say (no CLI flag, no key)
        if record.spec is None:
            raise UsageError(f"{run_id} {why} (the store's doctor says more)")
        if record.damage:
            raise UsageError(f"{run_id} is finished but {record.damage}; retrying it with force trains it again")
        raise UsageError(f"{run_id} is finished; its results stay")
    if state == FINISHED:  # with force, a finished run whose results are damaged: it trains again
        (store.run_dir(run_id) / METRICS).unlink(missing_ok=True)
        store.finish(run_id, FAILED, f"retried with --force: {record.damage}")
    if not store.requeue(run_id):
        raise UsageError(f"{run_id} is {store.read_status(run_id).state}: nothing to retry")
    return "queued again; it resumes from its last finished epoch"


def remove(store: RunStore, run_id: str, archive: bool = False) -> Path | None:
    """Delete a run's folder, or move it to ``.archive/``; returns where it went. Never a running run."""
    why = why_not("archive" if archive else "delete", store.read_status(run_id).state)
    if why:
        raise UsageError(f"{run_id} is {why} (kdengine runs stop {run_id})")
    return store.remove(run_id, archive=archive)


def plan_action(store: RunStore, run_ids: Iterable[str], action: str, force: bool = False) -> Plan:
    """Which of ``run_ids`` an action (stop, retry, delete, archive) applies to, and why the others are skipped:
    the one batch rule for the CLI and kdtui."""
    wanted = list(run_ids)
    return plan([read_record(store, rid) for rid in wanted], action, force)


def what_goes(store: RunStore, run_id: str) -> str:
    """What deleting a run takes with it: its size, its checkpoints, the runs that use it as a teacher."""
    return removal_summary(store, run_id)


@dataclass
class Trained:
    metrics: dict  # the run's final metrics
    baseline: dict | None  # its baseline's, when one was trained or reused


def train(store: RunStore, spec: RunSpec, device: str = "auto", loader_workers: int | None = None,
          fast: dict | None = None, trackers: Iterable[str] = (), with_baseline: bool = True, progress: bool = True,
          log: Log = print) -> Trained:
    """Train what the run needs (its teachers first, reused when finished), the run, then its baseline."""
    baseline = None if not with_baseline else baseline_of(spec)
    mine = [t.run_id for t in _teachers_first(spec)] + [spec.run_id] + ([baseline.run_id] if baseline else [])
    metrics, _ = train_here(store, [spec] + ([baseline] if baseline else []), mine, device, loader_workers, fast,
                            trackers, progress, log, again="run the same command again")
    return Trained(metrics[spec.run_id], metrics.get(baseline.run_id) if baseline else None)


def train_here(store: RunStore, specs: list[RunSpec], mine: list[str], device: str = "auto",
               loader_workers: int | None = None, fast: dict | None = None, trackers: Iterable[str] = (),
               progress: bool = True, log: Log = print, again: str = "run the same command again",
               keep_going: bool = False, worker: str | None = None, announce: Callable[[int, RunSpec], str] | None = None,
               before: dict[str, str | None] | None = None) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Train ``specs`` in this process, in order (each one's teachers first, reused when finished): the one loop
    ``kdengine train`` and ``study run`` share. ``mine``: every run this call may touch (ctrl-c leaves them
    resumable and says ``again``); ``keep_going``: a failed run is noted and the next one trains (a study), else it
    raises; ``announce(i, spec)``: a line before each run that is not finished yet; ``before``: the runs' states
    before the caller queued them (default: now). ({run id: metrics}, failed)"""
    from ..execution.executor import ensure_finished  # torch: this process trains
    from ..tracking.trackers import make_trackers  # torch (TensorBoard's writer): only where a run trains
    from ..training.device import setup_device  # torch

    before = _states(store, mine) if before is None else before
    dev = setup_device(device, loader_workers, **(fast or {}))
    if dev.cuda_graph and not dev.is_cuda:
        log("note: --cuda-graph applies to CUDA runs; on the CPU the step runs eagerly")
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
        raise _interrupted(store, exc, mine, before, again) from None
    return metrics, failed


def _busy_elsewhere(store: RunStore, spec: RunSpec) -> bool:
    """A run (or one of its teachers) another process is training now: this one would only wait for it."""
    return any(store.exists(s.run_id) and store.read_status(s.run_id).state == RUNNING
               for s in (*_teachers_first(spec), spec))


def _states(store: RunStore, run_ids: Iterable[str]) -> dict[str, str | None]:
    return {r: store.read_status(r).state if store.exists(r) else None for r in run_ids}


def _interrupted(store: RunStore, exc: KeyboardInterrupt, mine: list[str], before: dict, again: str) -> Interrupted:
    """Ctrl-C stops what the interrupted command started: the run it was training is stopped (resumable); a run
    it queued that depends on an unfinished teacher stays queued, waiting for it; any other run it queued is
    stopped before it starts, so that no other worker trains it behind the interrupted command's back. The
    message says what was stopped, how to resume, and what else is still running."""
    stopped = [str(exc)] if str(exc) else []
    waiting = []
    for rid in mine:
        if not store.exists(rid) or store.read_status(rid).state != QUEUED or before.get(rid) == QUEUED:
            continue
        teacher = next((t for t in _teachers_first(store.load_spec(rid))
                        if store.read_status(t.run_id).state != FINISHED), None)
        if teacher is not None:
            state = store.read_status(teacher.run_id).state
            store.note_waiting(rid, f"waiting: teacher {teacher.run_id} is {state}; resume it with: "
                                    f"kdengine runs retry {teacher.run_id}")
            waiting.append(rid)
        else:
            store.request_stop(rid)
            stopped.append(f"{rid} (queued by this command) stopped before it started")
    elsewhere = [rid for rid in mine if store.exists(rid) and store.read_status(rid).state == RUNNING]
    text = "; ".join(stopped) or "nothing was running yet"
    if waiting:
        text += f"; {', '.join(waiting)} {'wait' if len(waiting) > 1 else 'waits'} for its teacher"
    resumable = [rid for rid in mine if store.exists(rid) and store.read_status(rid).state in (STOPPED, FAILED)
                 and before.get(rid) != store.read_status(rid).state]
    text += (f". Resume with: kdengine runs retry {' '.join(resumable)}, or {again}" if resumable
             else f". Resume with: {again}")
    if elsewhere:
        text += f". Still running in other workers: {', '.join(elsewhere)} (kdengine runs stop {' '.join(elsewhere)})"
    return Interrupted(text)


def check(specs: Iterable[RunSpec], data: bool = True, decode: bool = False, isolate: bool | None = None) -> None:
    """The one set of checks before anything is queued (the CLI's train and study run, kdtui's launch and its
    study files): model names, whether each model takes its image size, local weights files, pretrained weights,
    the data source (``data``) and its images decoded into the cache (``decode``). Raises one UsageError line.

    What needs timm and torch (``preflight.needs_torch``) runs in a child process where the caller has not
    imported torch (``isolate`` None: decided so; kdtui never imports it), else in this process."""
    specs = list(specs)
    if isolate is None:
        isolate = "torch" not in sys.modules
    if not isolate:
        from ..preflight import preflight  # timm, on the meta device: proves the models before queueing

        preflight(specs, check_data=data, decode=decode)
        return
    from ..models.names import check_names  # torch-free: a mistyped name is refused at once, in this process
    from ..preflight import _all_specs, needs_torch

    check_names({s.model for s in _all_specs(specs)})
    if not (needs_torch(specs) or data):
        return
    flags = (["--data"] if data else []) + (["--decode"] if decode else [])
    proc = subprocess.run([sys.executable, "-m", "kdengine.preflight", *flags], capture_output=True, text=True,
                          input=json.dumps([s.to_dict() for s in specs]), timeout=1800)
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or ["the checks refused the runs"])[-1].removeprefix("error: ")
        raise UsageError(line)


check_runs = check  # for callers whose own parameter is named check (plan_study)
