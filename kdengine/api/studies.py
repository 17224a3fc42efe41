"""Studies: finding, planning, queueing and running a study (here, detached, on Ray), its progress and its shift.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import UsageError
from ..execution.packing import parse_runs_per_gpu
from ..options import schema_rows
from ..reports.study import study_axes, study_ids
from ..runspec import CONFIGS, differences
from ..store import RunStore
from ..store.lifecycle import FINISHED, QUEUED, RUNNING
from ..store.queue import enqueue
from ..store.records import collect, read_record
from ..store.status import RunStatus
from ..study import axes
from ..study.expand import PlannedRun, UnreadAxis, expand, unread_axes
from ..study.registry import list_studies, load_study_record, save_study
from ..study.schema import PRESETS, StudyConfig, load_raw, load_study, with_overrides
from ..study.schema import __doc__ as schema_layout
from . import checks
from .robustness import shift_runs
from .runs import Log, _quiet, _states, interrupted, resolve_run, train_here
from .workers import start_workers


def study_record(store: RunStore, name: str) -> dict | None:
    """A study's record, by its name, or by the file or preset that defines it; None when there is none."""
    record = load_study_record(store, name)
    if record is None and (Path(name).is_file() or name in PRESETS):  # a file or preset: its study's name
        raw, default, _ = load_raw(name)
        record = load_study_record(store, str(raw.get("name") or default))
    return record


def find_study(store: RunStore, name: str) -> dict:
    """A study's record, by its name, or by the file or preset that defines it (an error names the field
    ``study``)."""
    record = study_record(store, name)
    if record is None:
        known = ", ".join(list_studies(store)) or "none yet"
        raise UsageError(f"no study '{name}' in {store.root} (studies: {known})", field="study")
    return record


def study_names(store: RunStore) -> list[str]:
    """The studies recorded in the store."""
    return list_studies(store)


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


@dataclass(frozen=True)
class StudyProgress:
    name: str
    finished: int
    total: int
    eta_s: float | None  # the time left; None when it cannot be told yet (no run finished) or nothing is left to do


def study_progress(store: RunStore) -> list[StudyProgress]:
    """Per study: finished runs, all runs, and the time left: the running runs' own ETAs plus the queued runs at
    the study's mean run duration so far, spread over the live workers."""
    by_id = {r.run_id: r for r in collect(store)}
    workers = max(1, len(store.live_workers()))
    out = []
    for name in list_studies(store):
        ids = study_ids(load_study_record(store, name) or {})
        mine = [by_id[i] for i in ids if i in by_id]
        done = [r for r in mine if r.finished]
        running = [r for r in mine if r.state == RUNNING]
        queued = [r for r in mine if r.state == QUEUED]
        durations = [r.metrics.get("seconds") for r in done if r.metrics.get("seconds")]
        eta = None
        if running or queued:
            left = sum(r.status.progress.get("eta_s") or 0 for r in running)
            if queued and durations:
                left += len(queued) * (sum(durations) / len(durations)) / workers
            eta = left if (durations or not queued) else None
        out.append(StudyProgress(name, len(done), len(ids), eta))
    return out


@dataclass
class StudyPlan:
    """A study file (or preset) expanded into its runs, before anything is queued."""

    study: StudyConfig  # the file as read: name, seeds, settings, axes, shift
    runs: list[PlannedRun]  # each run's spec and roles, teachers first

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def axes(self) -> dict[str, list]:
        """A sweep's axes: {"kd.temperature": [1, 2, 4, 8]}; {} when it sweeps nothing."""
        return {a.key: a.values for a in self.study.axes}

    def point(self, run: PlannedRun) -> dict[str, Any]:
        """A run's value on each axis that shapes it ({} for a run every point shares)."""
        return axes.run_point(run.spec, list(self.axes))

    def runs_at(self, key: str, value: Any) -> list[PlannedRun]:
        """The runs trained with ``value`` on the axis ``key``."""
        return [p for p in self.runs if axes.norm(axes.axis_value(p.spec, key)) == axes.norm(value)]

    @property
    def unread(self) -> list[UnreadAxis]:
        """The axes a block's students of one method do not read: each such student trains once per seed."""
        return unread_axes(self.study, self.runs)

    @property
    def teacher_differences(self) -> list[str] | None:
        """How ``[teacher_train]`` differs from ``[train]`` (``key a→b``); None when the teachers train as the
        students do."""
        return None if self.study.teacher_train is None else differences(self.study.train, self.study.teacher_train)


def plan_study(store: RunStore, file_or_preset: str, sets: list[str] | None = None, data: str | None = None,
               check: bool = True, decode: bool = False, isolate: bool | None = None) -> StudyPlan:
    """A study file (or preset, or the name of a study the store knows) with ``KEY=VALUE`` overrides, expanded into
    its runs; with ``check`` every model, image size, weights file and data source is proved before anything is
    queued (``decode``: the images too, into the cache the runs will read). A study's name asks again for what it
    was last asked (the request the store recorded, its overrides included): ``study run NAME`` resumes it."""
    study = (load_study(file_or_preset, sets, data) if Path(file_or_preset).expanduser().exists()
             or file_or_preset in PRESETS else _recorded_study(store, file_or_preset, sets, data))
    plan = StudyPlan(study, expand(study))
    if check:
        checks.check([p.spec for p in plan.runs], decode=decode, isolate=isolate)
    return plan


def _recorded_study(store: RunStore, name: str, sets: list[str] | None, data: str | None) -> StudyConfig:
    """The study ``name`` as the store recorded its last request; no such study: the loader's own error."""
    record = load_study_record(store, name)
    if record is None and (Path(name).suffix or len(Path(name).parts) > 1):
        return load_study(name, sets, data)  # a file's name: no such file, said as such
    if record is None or not isinstance(record.get("config"), dict):
        known = ", ".join(list_studies(store)) or "none yet"
        raise UsageError(f"no study file, preset or study '{name}' (presets: {', '.join(PRESETS)}; studies in "
                         f"{store.root}: {known})", field="study")
    return with_overrides(record["config"], str(record.get("name") or name), str(record.get("source") or name),
                          sets, data)


@dataclass
class StudyOutcome:
    name: str
    total: int
    finished: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    workers: list[int] = field(default_factory=list)  # detached workers started


def queue_study(store: RunStore, plan: StudyPlan, device: str = "auto") -> None:
    """Record the study and queue its runs (a failed or stopped run of it is queued again, once)."""
    save_study(store, plan.study, plan.runs)
    for p in plan.runs:
        enqueue(store, p.spec, device=device)


def run_study_detached(store: RunStore, plan: StudyPlan, device: str = "auto", runs_per_gpu: int | str = 1,
                       fast: dict | None = None) -> StudyOutcome:
    """Queue the study and start background workers; returns at once."""
    queue_study(store, plan, device)
    pids = start_workers(store, device, runs_per_gpu, fast)
    return StudyOutcome(plan.name, len(plan.runs), _finished(store, plan), workers=pids)


def run_study_here(store: RunStore, plan: StudyPlan, device: str = "auto", loader_workers: int | None = None,
                   fast: dict | None = None, trackers: Iterable[str] = (), progress: bool = True,
                   log: Log = _quiet, announce=None) -> StudyOutcome:
    """Queue the study and train its runs in this process, in order (teachers first); then its shift.
    ``announce(i, run, point)``: a line before each run that is not finished yet."""
    mine = [p.run_id for p in plan.runs]
    by_id = {p.run_id: p for p in plan.runs}
    before = _states(store, mine)
    queue_study(store, plan, device)
    say = None if announce is None else \
        (lambda i, spec: announce(i, by_id[spec.run_id], plan.point(by_id[spec.run_id])))
    _, failed = train_here(store, [p.spec for p in plan.runs], mine, device, loader_workers, fast, trackers, progress,
                           log, study=plan.name, keep_going=True, worker=f"study:{plan.name}", announce=say,
                           before=before)
    try:
        shift_study(store, plan, device, log)
    except KeyboardInterrupt as exc:
        raise interrupted(store, exc, mine, before, plan.name) from None
    return StudyOutcome(plan.name, len(plan.runs), _finished(store, plan), failed)


def run_study_on_ray(store: RunStore, plan: StudyPlan, address: str | None, device: str = "auto",
                     runs_per_gpu: int | str = 1, loader_workers: int | None = None, fast: dict | None = None,
                     log: Log = _quiet) -> StudyOutcome:
    """Queue the study and train it on a Ray cluster, one task per run; then its shift."""
    from ..execution.ray_executor import run_on_ray  # ray and torch: the driver dispatches the runs

    queue_study(store, plan, device)
    todo = [p for p in plan.runs if store.read_status(p.run_id).state != FINISHED]
    if isinstance(runs_per_gpu, str):
        runs_per_gpu = parse_runs_per_gpu(runs_per_gpu)
    failed = run_on_ray(store.root, todo, address, device, runs_per_gpu, loader_workers, fast or {}, log)
    shift_study(store, plan, device, log)
    return StudyOutcome(plan.name, len(plan.runs), _finished(store, plan), failed)


def _finished(store: RunStore, plan: StudyPlan) -> int:
    return sum(store.read_status(p.run_id).state == FINISHED for p in plan.runs)


def shift_study(store: RunStore, plan: StudyPlan, device: str = "auto", log: Log = _quiet) -> None:
    """A study's ``[shift]``: every finished run of it under acquisition shift (stored results are read back)."""
    sh = plan.study.shift
    if sh is None or not _finished(store, plan):
        return
    done = [p.run_id for p in plan.runs if store.read_status(p.run_id).state == FINISHED]
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


def study_file(file_or_preset: str) -> dict[str, Any]:
    """A study file (or a preset shipped with kdstudy) as written: its TOML tables, nothing expanded."""
    raw, _, _ = load_raw(file_or_preset)
    return raw
