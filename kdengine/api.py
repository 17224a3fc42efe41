"""kdstudy's service layer: what a person (or a script, or a notebook) can ask of kdstudy, each in one place.

The CLI's commands parse their arguments and call one function here; kdtui calls the same functions, so a
retry from the TUI and from the CLI are the same code, as harlequin's UI talks only to its adapter. A bad
request raises a one-line :class:`~kdengine.errors.KDError`; each front end says it its own way.

Importing this module never imports torch (kdtui uses it): the functions that train or evaluate import the
engine when they are called (those imports are listed, with their reason, in ``.importlinter``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .data.config import open_source
from .errors import Interrupted, KDError, RunFailed, UsageError
from .execution.launch import ensure_workers, visible_gpus
from .execution.packing import describe_plan, memory_table, parse_runs_per_gpu, plan_workers, queued_keys
from .explain.request import Request
from .options import identity_values
from .paths import runs_dir
from .store.records import collect, flat_settings, read_record, roles_of
from .reports.report import build_report
from .reports.study import study_axes, study_ids, study_records, study_tables
from .reports.tables import Tables, build, export
from .runspec import RunSpec, baseline_of, ce_spec
from .store import RunStore
from .store.actions import DAMAGED, Plan, actions_for, plan, why_not
from .store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING
from .store.queue import enqueue, teacher_notes
from .store.runstore import METRICS, device_of, removal_summary
from .study.expand import expand
from .study.registry import list_studies, load_study_record, save_study
from .study.schema import PRESETS, load_raw, load_study

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


# -- the store -------------------------------------------------------------------------------------------------
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


# -- queueing and workers -----------------------------------------------------------------------------------------
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


def queue(store: RunStore, spec: RunSpec, with_baseline: bool = True, device: str = "auto") -> Queued:
    """Queue a run (its teachers first) and, for a KD run, its baseline; say what each teacher will be."""
    notes = teacher_notes(store, spec, verb="queueing")
    if note := cuda_elsewhere(device):  # nvidia-smi, asked once
        notes.append(note)
    before = {rid: store.read_status(rid)["state"] for rid in store.list_ids()}
    rid = enqueue(store, spec, device=device)
    baseline = baseline_of(spec) if with_baseline else None
    base_id = enqueue(store, baseline, device=device) if baseline is not None else None
    wanted = [t.run_id for t in _teachers_first(spec)] + [rid] + ([base_id] if base_id else [])
    runs = [r for r in dict.fromkeys(wanted) if store.read_status(r)["state"] == QUEUED and before.get(r) != QUEUED]
    return Queued(rid, base_id, runs, notes)


def _teachers_first(spec: RunSpec) -> list[RunSpec]:
    out = []
    for t in spec.teachers:
        out += _teachers_first(t) + [t]
    return out


def start_workers(store: RunStore, device: str = "auto", runs_per_gpu: int | str = 1,
                  fast: dict | None = None) -> list[int]:
    """Make sure detached workers serve the store; the pids started (none when one is already running)."""
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    return ensure_workers(store.root, device, runs_per_gpu=runs_per_gpu, fast=fast)


def launch(store: RunStore, spec: RunSpec, device: str = "auto", with_baseline: bool = True,
           runs_per_gpu: int | str = 1, fast: dict | None = None, workers: bool = True) -> tuple[Queued, list[int]]:
    """Queue a run (and its baseline) and make sure a worker will train it."""
    queued = queue(store, spec, with_baseline, device)
    return queued, (start_workers(store, device, runs_per_gpu, fast) if workers else [])


def worker_plan(store: RunStore, device: str = "auto", runs_per_gpu: int | str = "auto") -> str:
    """What ``--runs-per-gpu`` would start (each GPU, its workers and why, each queued shape's memory need),
    measured or estimated now on the meta device; nothing is started or written."""
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    gpus = visible_gpus() if device in ("auto", "cuda") else []
    if not gpus:
        return ("no GPU visible (nvidia-smi): one CPU worker" if device != "cuda" else
                "no GPU visible (nvidia-smi): a CUDA worker would have nothing to run on")
    table = memory_table(store)
    from .training.memory import estimate_peak  # torch, on the meta device: only for the plan

    for key, ids in queued_keys(store).items():
        if not table.get(key, {}).get("peak") and not table.get(key, {}).get("estimate"):
            table[key] = {**table.get(key, {}), "estimate": estimate_peak(store.load_spec(ids[0]))}
    return describe_plan(plan_workers(store, runs_per_gpu, gpus, table=table))


# -- selecting and describing runs ------------------------------------------------------------------------------
def select_runs(store: RunStore, run_ids: Iterable[str] = (), study: str | None = None,
                states: Iterable[str] = ()) -> list[str]:
    """Run ids named (or unambiguous parts of them), else every run; narrowed to a study's runs and to states."""
    ids = [resolve_run(store, r) for r in run_ids] if run_ids else store.list_ids()
    if study:
        members = set(study_ids(find_study(store, study)))
        ids = [r for r in ids if r in members]
    states = set(states)
    if states:
        ids = [r for r in ids if read_record(store, r).state in states]
    return list(dict.fromkeys(ids))


def role_word(record, roles: dict[str, set[str]]) -> str:
    """What a run is, in the list and in its detail alike: its strategy, or for a cross-entropy run its role
    (teacher, baseline, or both: one run serves as both), or a defective teacher."""
    if record.spec is None:
        return "damaged"
    if record.kind == "kd":
        return record.strategy
    if record.regime == "defective":
        return "defective T"
    return "+".join(sorted(roles.get(record.run_id, {"baseline"}) - {"student"}, reverse=True)) or "baseline"


def run_rows(store: RunStore, records, every=None) -> list[dict]:
    """One plain row per run of ``records``: what the CLI's list and scripts show. ``every``: the store's records,
    when the caller has read them already (baselines and roles come from them)."""
    by_id = {r.run_id: r for r in (collect(store) if every is None else every)}
    roles = roles_of([r for r in by_id.values() if r.spec])
    rows = []
    for r in records:
        base = by_id.get(r.baseline_id) if r.baseline_id else None
        kind = r.spec.data.source.split(":", 1)[0] if r.spec else "?"
        rows.append({"run_id": r.run_id, "state": r.state, "what": role_word(r, roles), "strategy": r.strategy,
                     "regime": r.regime, "teacher": r.teacher_label, "student": r.model, "seed": r.seed,
                     "device": device_of(r.status), "data": r.spec.data.source if r.spec else None,
                     "data_kind": kind, "synthetic": kind == "synthetic", "test_accuracy": r.accuracy("test"),
                     "baseline_run_id": r.baseline_id, "gain": r.gain_over(base),
                     "reason": r.damage or r.status.get("reason")})
    return rows


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
                     + f"{store.read_status(t.run_id)['state'] if store.exists(t.run_id) else 'not in the store'}"
                     + (f", test accuracy {acc:.4f}" if acc is not None else "") + ")")
    if record.baseline_id:
        base = read_record(store, record.baseline_id) if store.exists(record.baseline_id) else None
        text = f"baseline: {record.baseline_id} ({base.state if base is not None else 'not in the store'}"
        if (gain := record.gain_over(base)) is not None:
            text += f", test accuracy {base.accuracy('test'):.4f}; gain {gain:+.4f}"
        lines.append(text + ")")
    return lines


# -- acting on runs ------------------------------------------------------------------------------------------------
def stop(store: RunStore, run_id: str) -> str:
    """Ask a run to stop: a running run stops within a heartbeat (its last epoch stays resumable); a queued one
    stops now. Returns what happened, in a few words."""
    state = store.read_status(run_id)["state"]
    why = why_not("stop", state)
    if why:
        raise UsageError(f"{run_id} is {why}")
    return {"stopping": "stopping (it stops within a few seconds; its last finished epoch stays resumable)",
            "stopped": "stopped before it started"}.get(store.request_stop(run_id), state)


def retry(store: RunStore, run_id: str, force: bool = False) -> str:
    """Queue a failed, stopped or interrupted run again (it resumes from its last finished epoch); with
    ``force``, also a finished run whose results are damaged (it trains again). Returns what happened."""
    record = read_record(store, run_id)
    state = record.state
    why = actions_for(record, force)["retry"]
    if state in (QUEUED, RUNNING):
        return f"already {state}"
    if why is not None:  # decided by store.actions; said here as the CLI says it
        if record.spec is None:
            raise UsageError(f"{run_id} {why} (kdengine runs doctor)")
        if record.damage:
            raise UsageError(f"{run_id} is finished but {record.damage}; --force trains it again")
        raise UsageError(f"{run_id} is finished; its results stay (kdengine runs show {run_id})")
    if state in (FINISHED, DAMAGED):
        (store.run_dir(run_id) / METRICS).unlink(missing_ok=True)
        store.finish(run_id, FAILED, f"retried with --force: {record.damage}")
    if not store.requeue(run_id):
        raise UsageError(f"{run_id} is {store.read_status(run_id)['state']}: nothing to retry")
    return "queued again; it resumes from its last finished epoch"


def remove(store: RunStore, run_id: str, archive: bool = False) -> Path | None:
    """Delete a run's folder, or move it to ``.archive/``; returns where it went. Never a running run."""
    why = why_not("archive" if archive else "delete", store.read_status(run_id)["state"])
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


# -- training in this process --------------------------------------------------------------------------------------
@dataclass
class Trained:
    metrics: dict  # the run's final metrics
    baseline: dict | None  # its baseline's, when one was trained or reused


def train(store: RunStore, spec: RunSpec, device: str = "auto", loader_workers: int | None = None,
          fast: dict | None = None, trackers: Iterable[str] = (), with_baseline: bool = True, progress: bool = True,
          log: Log = print) -> Trained:
    """Train what the run needs (its teachers first, reused when finished), the run, then its baseline."""
    from .execution.executor import ensure_finished  # torch: this process trains
    from .tracking.trackers import make_trackers  # torch (TensorBoard's writer): only where a run trains
    from .training.device import setup_device  # torch

    dev = setup_device(device, loader_workers, **(fast or {}))
    if dev.cuda_graph and not dev.is_cuda:
        log("note: --cuda-graph applies to CUDA runs; on the CPU the step runs eagerly")
    names = list(trackers)
    make_trackers(names)  # fail early on a missing extra
    baseline = None if not with_baseline else baseline_of(spec)
    mine = [t.run_id for t in _teachers_first(spec)] + [spec.run_id] + ([baseline.run_id] if baseline else [])
    before = _states(store, mine)
    try:
        metrics = ensure_finished(store, spec, dev, trackers=lambda: make_trackers(names), progress=progress, log=log)
        base = None
        if baseline is not None:
            base = ensure_finished(store, baseline, dev, trackers=lambda: make_trackers(names), progress=progress,
                                   log=log)
    except KeyboardInterrupt as exc:
        raise _interrupted(store, exc, mine, before, "run the same command again") from None
    return Trained(metrics, base)


def _states(store: RunStore, run_ids: Iterable[str]) -> dict[str, str | None]:
    return {r: store.read_status(r)["state"] if store.exists(r) else None for r in run_ids}


def _interrupted(store: RunStore, exc: KeyboardInterrupt, mine: list[str], before: dict, again: str) -> Interrupted:
    """Ctrl-C stops what the interrupted command started: the run it was training is stopped (resumable); a run
    it queued that depends on an unfinished teacher stays queued, waiting for it; any other run it queued is
    stopped before it starts, so that no other worker trains it behind the interrupted command's back. The
    message says what was stopped, how to resume, and what else is still running."""
    stopped = [str(exc)] if str(exc) else []
    waiting = []
    for rid in mine:
        if not store.exists(rid) or store.read_status(rid)["state"] != QUEUED or before.get(rid) == QUEUED:
            continue
        teacher = next((t for t in _teachers_first(store.load_spec(rid))
                        if store.read_status(t.run_id)["state"] != FINISHED), None)
        if teacher is not None:
            state = store.read_status(teacher.run_id)["state"]
            store.note_waiting(rid, f"waiting: teacher {teacher.run_id} is {state}; resume it with: "
                                    f"kdengine runs retry {teacher.run_id}")
            waiting.append(rid)
        else:
            store.request_stop(rid)
            stopped.append(f"{rid} (queued by this command) stopped before it started")
    elsewhere = [rid for rid in mine if store.exists(rid) and store.read_status(rid)["state"] == RUNNING]
    text = "; ".join(stopped) or "nothing was running yet"
    if waiting:
        text += f"; {', '.join(waiting)} {'wait' if len(waiting) > 1 else 'waits'} for its teacher"
    text += f". Resume with: kdengine runs retry RUN_ID, or {again}"
    if elsewhere:
        text += f". Still running in other workers: {', '.join(elsewhere)} (kdengine runs stop RUN_ID)"
    return Interrupted(text)


# -- the checks before queueing ----------------------------------------------------------------------------------
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
        from .preflight import preflight  # timm, on the meta device: proves the models before queueing

        preflight(specs, check_data=data, decode=decode)
        return
    from .models.names import check_names  # torch-free: a mistyped name is refused at once, in this process
    from .preflight import _all_specs, needs_torch

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


# -- tables and the report -----------------------------------------------------------------------------------------
def tables(store: RunStore, study: str | None = None, metric: str = "accuracy", **stats) -> Tables:
    """Every table of one study (its runs only, with the roles it gave them) or of every run. ``.long`` is the
    long table (a pandas DataFrame: one row per run and split), for scripts and notebooks. ``stats``: interval
    (seeds+images, seeds) and correction (holm, bh, none), as README's Statistics says."""
    if study:
        return study_tables(store, find_study(store, study)["name"], metric, **stats)
    return build(collect(store), metric, **stats)


def export_tables(result: Tables, out: Path, fmt: str = "csv") -> list[Path]:
    return export(result, Path(out), fmt)


def report(store: RunStore, study: str | None, metric: str, out: Path, **stats) -> Path:
    """The self-contained HTML report of one study (or of every run); returns its path."""
    return build_report(store, find_study(store, study)["name"] if study else None, metric, Path(out), **stats)


# -- studies ---------------------------------------------------------------------------------------------------------
def _study_record(store: RunStore, name: str) -> dict | None:
    """A study's record, by its name, or by the file or preset that defines it; None when there is none."""
    record = load_study_record(store, name)
    if record is None and (Path(name).is_file() or name in PRESETS):  # a file or preset: its study's name
        raw, default, _ = load_raw(name)
        record = load_study_record(store, str(raw.get("name") or default))
    return record


def find_study(store: RunStore, name: str) -> dict:
    """A study's record, by its name, or by the file or preset that defines it."""
    record = _study_record(store, name)
    if record is None:
        known = ", ".join(list_studies(store)) or "none yet"
        raise UsageError(f"no study '{name}' in {store.root} (studies: {known})")
    return record


@dataclass
class StudyStatus:
    name: str
    source: str
    seeds: list
    states: dict[str, dict]  # run id -> status
    axes: dict[str, list] = field(default_factory=dict)  # a sweep's axes: {"kd.temperature": [1, 2, 4, 8]}


def study_status(store: RunStore, name: str) -> StudyStatus:
    record = find_study(store, name)
    states = {rid: store.read_status(rid) for rid in study_ids(record)}
    return StudyStatus(record["name"], record.get("source", ""), record.get("seeds", []), states, study_axes(record))


def plan_study(file_or_preset: str, sets: list[str] | None = None, data: str | None = None, check: bool = True,
               decode: bool = False, isolate: bool | None = None):
    """A study file (or preset) with ``--set`` overrides, expanded into its runs; with ``check`` every model,
    image size, weights file and data source is proved before anything is queued (``decode``: the images
    too, into the cache the runs will read). (study, plan)"""
    study = load_study(file_or_preset, sets, data)
    plan = expand(study)
    if check:
        check_runs([p.spec for p in plan], decode=decode, isolate=isolate)
    return study, plan


@dataclass
class StudyOutcome:
    name: str
    total: int
    finished: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    workers: list[int] = field(default_factory=list)  # detached workers started


def queue_study(store: RunStore, study, plan, device: str = "auto") -> None:
    """Record the study and queue its runs (a failed or stopped run of it is queued again, once)."""
    save_study(store, study, plan)
    for p in plan:
        enqueue(store, p.spec, device=device)


def run_study_detached(store: RunStore, study, plan, device: str = "auto", runs_per_gpu: int | str = 1,
                       fast: dict | None = None) -> StudyOutcome:
    """Queue the study and start background workers; returns at once."""
    queue_study(store, study, plan, device)
    pids = start_workers(store, device, runs_per_gpu, fast)
    return StudyOutcome(study.name, len(plan), _finished(store, plan), workers=pids)


def run_study_here(store: RunStore, study, plan, device: str = "auto", loader_workers: int | None = None,
                   fast: dict | None = None, trackers: Iterable[str] = (), progress: bool = True,
                   log: Log = _quiet) -> StudyOutcome:
    """Queue the study and train its runs in this process, in order (teachers first); then its shift."""
    from .execution.executor import ensure_finished  # torch: this process trains
    from .tracking.trackers import make_trackers  # torch (TensorBoard's writer): only where a run trains
    from .training.device import setup_device  # torch

    mine = [p.run_id for p in plan]
    before = _states(store, mine)
    queue_study(store, study, plan, device)
    dev = setup_device(device, loader_workers, **(fast or {}))
    names = list(trackers)
    failed = []
    try:
        for i, p in enumerate(plan, start=1):
            if store.read_status(p.run_id)["state"] == FINISHED:
                continue
            log(f"[{i}/{len(plan)}] {p.spec.describe()} (seed {p.spec.seed})")
            try:
                ensure_finished(store, p.spec, dev, trackers=lambda: make_trackers(names), progress=progress,
                                worker=f"study:{study.name}", log=log, requeue=False)
            except (RunFailed, KDError) as exc:
                failed.append((p.run_id, str(exc)))
                log(f"failed: {p.run_id}: {exc}")
        shift_study(store, study, plan, device, log)
    except KeyboardInterrupt as exc:
        raise _interrupted(store, exc, mine, before, f"kdengine study run {study.name} again") from None
    return StudyOutcome(study.name, len(plan), _finished(store, plan), failed)


def run_study_on_ray(store: RunStore, study, plan, address: str | None, device: str = "auto",
                     runs_per_gpu: int | str = 1, loader_workers: int | None = None, fast: dict | None = None,
                     log: Log = _quiet) -> StudyOutcome:
    """Queue the study and train it on a Ray cluster, one task per run; then its shift."""
    from .execution.ray_executor import run_on_ray  # ray and torch: the driver dispatches the runs

    queue_study(store, study, plan, device)
    todo = [p for p in plan if store.read_status(p.run_id)["state"] != FINISHED]
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    failed = run_on_ray(store.root, todo, address, device, runs_per_gpu, loader_workers, fast or {}, log)
    shift_study(store, study, plan, device, log)
    return StudyOutcome(study.name, len(plan), _finished(store, plan), failed)


def _finished(store: RunStore, plan) -> int:
    return sum(store.read_status(p.run_id)["state"] == FINISHED for p in plan)


def shift_study(store: RunStore, study, plan, device: str = "auto", log: Log = _quiet) -> None:
    """A study's ``[shift]``: every finished run of it under acquisition shift (stored results are read back)."""
    if study.shift is None or not _finished(store, plan):
        return
    from .data.corruptions import parse_severities, parse_shifts  # cv2: the shifts' image work
    from .shift.evaluate import evaluate_run  # torch: the best checkpoints are evaluated here
    from .training.device import setup_device  # torch

    sh = study.shift
    dev = setup_device(device)
    for p in plan:
        if store.read_status(p.run_id)["state"] == FINISHED:
            evaluate_run(store, p.run_id, parse_shifts(sh.shifts), parse_severities(sh.severities), sh.seed,
                         sh.external, dev, log=log)


# -- data ------------------------------------------------------------------------------------------------------------
def check_data(cfg, image_size: int | None, skip_bad: bool, progress=None) -> dict:
    """Index (and decode, unless ``image_size`` is None) a source; its summary: classes, splits, groups, skips."""
    from .data.cache import build_or_load, require_usable, usable_counts  # cv2: decoding images

    source = open_source(cfg)
    summary = source.summary()
    if image_size:
        cache = build_or_load(source, image_size, skip_bad=skip_bad, progress=progress)
        summary = source.summary()  # now includes undecodable images, when skipped
        usable = usable_counts(cache, source.class_names)
        for split, counts in usable.items():  # the images training will use, not the files found
            summary["splits"][split].update(counts)
        summary["cache"] = {"path": str(cache.path), "size": image_size, "hit": cache.hit,
                            "usable": {s: c["images"] for s, c in usable.items()}}
        require_usable(cache, source)  # the same verdict as training's
    summary["usable"] = True
    return summary


# -- acquisition shift -------------------------------------------------------------------------------------------------
def target_runs(store: RunStore, target: str) -> tuple[str, list[str]]:
    """(a name for the output, the run ids) of a STUDY|RUN argument: a study's finished runs, or one run (and
    its finished baseline)."""
    record = _study_record(store, target)
    if record is not None:
        name = record.get("name", target)
        finished = [r for r in study_ids(record) if store.exists(r) and store.read_status(r)["state"] == FINISHED]
        if not finished:
            raise UsageError(f"study {name} has no finished runs yet")
        return name, finished
    rid = resolve_run(store, target)
    base = read_record(store, rid).baseline_id
    if base and store.exists(base) and store.read_status(base)["state"] == FINISHED:
        return rid, [rid, base]  # the gain under shift needs the baseline under the same shift
    return rid, [rid]


def shift(store: RunStore, target: str, shifts: str = "all", severities: str = "1..5", seed: int = 0,
          external: str | None = None, device: str = "auto", batch_size: int | None = None, force: bool = False,
          log: Log = _quiet) -> tuple[str, dict[str, dict]]:
    """Evaluate a run's (or a study's finished runs') best checkpoints under acquisition shift; (name, results)."""
    from .data.corruptions import parse_severities, parse_shifts  # cv2: the shifts' image work
    from .shift.evaluate import evaluate_run  # torch: the best checkpoints are evaluated here
    from .training.device import setup_device  # torch

    names, levels = parse_shifts(shifts), parse_severities(severities)
    if batch_size is not None and not 1 <= batch_size <= 65536:
        raise UsageError(f"--batch-size must lie in [1, 65536], got {batch_size}")
    name, ids = target_runs(store, target)
    dev = setup_device(device)
    return name, {rid: evaluate_run(store, rid, names, levels, seed, external, dev, batch_size, force, log)
                  for rid in ids}


def explain(store: RunStore, target: str, images: int = 8, method: str = "gradcam", split: str = "test",
            seed: int = 0, target_class: str = "true", shift: str | None = None, device: str = "auto",
            force: bool = False, log: Log = _quiet):
    """Class activation maps of a run (with its teachers and baseline) or of a study's finished runs, and the
    KD runs' attention agreement; (name, Outcome)."""
    from .explain.run import explain as explain_runs  # torch and grad-cam: the maps are computed here
    from .training.device import setup_device  # torch

    req = Request(method, split, images, seed, target_class, shift)
    name, ids = target_runs(store, target)
    return name, explain_runs(store, ids, req, setup_device(device).device, force, log)


def shift_tables(store: RunStore, name: str, run_ids: Iterable[str]) -> Tables:
    wanted = set(run_ids)
    return build([r for r in collect(store) if r.run_id in wanted],
                 title=f"{name}: accuracy, and robustness under acquisition shift")


__all__ = ["open_store", "resolve_run", "queue", "launch", "start_workers", "worker_plan", "stop", "retry",
           "remove", "what_goes", "plan_action", "check", "why_not", "DAMAGED", "train", "tables", "export_tables", "report", "find_study", "study_status",
           "plan_study", "run_study_detached", "run_study_here", "run_study_on_ray", "shift", "target_runs", "explain",
           "shift_tables", "study_records"]
