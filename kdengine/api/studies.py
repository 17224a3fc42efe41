"""Studies: finding, planning, queueing and running a study (here, detached, on Ray), and its shift.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import UsageError
from ..execution.packing import parse_runs_per_gpu
from ..reports.study import study_axes, study_ids
from ..store import RunStore
from ..store.status import RunStatus
from ..store.records import read_record

from ..store.lifecycle import FINISHED
from ..store.queue import enqueue
from ..study import axes
from ..study.expand import expand, unread_axes  # noqa: F401 - unread_axes: what a sweep does not change
from ..study.registry import list_studies, load_study_record, save_study
from ..options import schema_rows
from ..runspec import CONFIGS
from ..study.schema import PRESETS, load_raw, load_study
from ..study.schema import __doc__ as schema_layout
from .runs import Log, _interrupted, _quiet, _states, check_runs, resolve_run, train_here
from .workers import start_workers


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
    states: dict[str, RunStatus]  # run id -> status
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
    mine = [p.run_id for p in plan]
    keys = [a.key for a in study.axes]
    before = _states(store, mine)
    queue_study(store, study, plan, device)
    _, failed = train_here(store, [p.spec for p in plan], mine, device, loader_workers, fast, trackers, progress, log,
                           again=f"kdengine study run {study.name} again", keep_going=True,
                           worker=f"study:{study.name}",
                           announce=lambda i, spec: f"[{i}/{len(plan)}] {spec.describe()} (seed {spec.seed}"
                           + "".join(f", {p}" for p in [axes.point_text(axes.run_point(spec, keys))] if p) + ")",
                           before=before)
    try:
        shift_study(store, study, plan, device, log)
    except KeyboardInterrupt as exc:
        raise _interrupted(store, exc, mine, before, f"kdengine study run {study.name} again") from None
    return StudyOutcome(study.name, len(plan), _finished(store, plan), failed)


def run_study_on_ray(store: RunStore, study, plan, address: str | None, device: str = "auto",
                     runs_per_gpu: int | str = 1, loader_workers: int | None = None, fast: dict | None = None,
                     log: Log = _quiet) -> StudyOutcome:
    """Queue the study and train it on a Ray cluster, one task per run; then its shift."""
    from ..execution.ray_executor import run_on_ray  # ray and torch: the driver dispatches the runs

    queue_study(store, study, plan, device)
    todo = [p for p in plan if store.read_status(p.run_id).state != FINISHED]
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    failed = run_on_ray(store.root, todo, address, device, runs_per_gpu, loader_workers, fast or {}, log)
    shift_study(store, study, plan, device, log)
    return StudyOutcome(study.name, len(plan), _finished(store, plan), failed)


def _finished(store: RunStore, plan) -> int:
    return sum(store.read_status(p.run_id).state == FINISHED for p in plan)


def shift_study(store: RunStore, study, plan, device: str = "auto", log: Log = _quiet) -> None:
    """A study's ``[shift]``: every finished run of it under acquisition shift (stored results are read back)."""
    if study.shift is None or not _finished(store, plan):
        return
    from .evaluation import shift_runs  # evaluation reads studies (their records): imported when a study shifts

    sh = study.shift
    done = [p.run_id for p in plan if store.read_status(p.run_id).state == FINISHED]
    shift_runs(store, done, sh.shifts, sh.severities, sh.seed, sh.external, device, log=log)


@dataclass(frozen=True)
class SchemaSection:
    name: str  # data, train, teacher_train, kd, shift
    rows: list[tuple[str, str, str, str]]  # (key, type, default, help)
    note: str = ""


def study_schema() -> tuple[str, list[SchemaSection]]:
    """What a study file holds: its layout (the schema's own words) and every key of each section."""
    from ..data.corruptions import ShiftConfig  # cv2: only the schema prints [shift]

    sections = [SchemaSection(name, schema_rows(cls)) for name, cls in
                (("data", CONFIGS["data"]), ("train", CONFIGS["train"]))]
    sections.append(SchemaSection("teacher_train", [], "each key optional; unset keys follow [train]"))
    sections += [SchemaSection("kd", schema_rows(CONFIGS["kd"])), SchemaSection("shift", schema_rows(ShiftConfig))]
    return schema_layout.split("The sections")[0].rstrip(), sections


def select_runs(store: RunStore, run_ids: Iterable[str] = (), study: str | None = None,
                states: Iterable[str] = (), damaged: bool = False) -> list[str]:
    """Run ids named (or unambiguous parts of them), else every run; narrowed to a study's runs, to states and
    (``damaged``) to runs whose files cannot be read as a run's."""
    ids = [resolve_run(store, r) for r in run_ids] if run_ids else store.list_ids()
    if study:
        members = set(study_ids(find_study(store, study)))
        ids = [r for r in ids if r in members]
    states = set(states)
    if states or damaged:
        records = [read_record(store, r) for r in ids]
        ids = [r.run_id for r in records if (not states or r.state in states) and (r.damaged or not damaged)]
    return list(dict.fromkeys(ids))
