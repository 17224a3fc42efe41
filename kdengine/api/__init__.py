"""kdstudy's service layer: what a person (or a script, or a notebook) can ask of kdstudy, each in one place.

The CLI's commands parse their arguments and call one function here; kdtui calls the same functions, so a
retry from the TUI and from the CLI are the same code, as harlequin's UI talks only to its adapter. A bad
request raises a one-line :class:`~kdengine.errors.KDError`; each front end says it its own way.

Importing it never imports torch (kdtui uses it): the functions that train or evaluate import the
engine when they are called (those imports are listed, with their reason, in ``.importlinter``).

A package by use case: ``runs``, ``workers``, ``results``, ``studies``, ``evaluation``; every name a front end uses is here."""
from __future__ import annotations

from .runs import Log, Queued, Trained, check, check_runs, cuda_elsewhere, open_store, plan_action, queue, remove, resolve_run, retry, role_word, run_facts, run_rows, stop, train, what_goes  # noqa: F401
from .workers import launch, start_workers, worker_plan  # noqa: F401
from .results import export_tables, report, shift_tables, tables  # noqa: F401
from .studies import StudyOutcome, StudyStatus, find_study, plan_study, queue_study, run_study_detached, run_study_here, run_study_on_ray, select_runs, shift_study, study_status  # noqa: F401
from .evaluation import check_data, explain, shift, target_runs  # noqa: F401
from ..reports.study import study_records  # noqa: F401 - a study's records, for scripts
from ..store.actions import DAMAGED, why_not  # noqa: F401 - what may be done to a run (kdtui's keys)

# What the front ends read besides the use cases, re-exported so that kdtui depends on kdengine.api alone (the
# "one-door" contract): the store's files and states, a run's spec, studies, the tables' cells, the data source,
# the GPUs. All torch-free.
from ..atomic import write_json  # noqa: F401, E402 - the launch form remembers its values
from ..data.config import DataConfig, open_source  # noqa: F401, E402 - the launch form checks its data as typed
from ..execution.launch import gpu_count  # noqa: F401, E402 - the worker dialog offers the GPUs
from ..execution.packing import gpu_info  # noqa: F401, E402 - the Workers screen shows them
from ..models.names import check_name  # noqa: F401, E402 - the launch form checks a model name as typed
from ..paths import runs_dir  # noqa: F401, E402 - where the store is by default
from ..reports.stats import Summary  # noqa: F401, E402 - a table's cell
from ..reports.tables import METRICS, describe_written  # noqa: F401, E402 - the tables' metrics, what an export wrote
from ..runspec import CONFIGS, MAX_SEED, RunSpec, baseline_of, build_specs  # noqa: F401, E402 - a run's spec
from ..store import RunStore  # noqa: F401, E402
from ..store import events  # noqa: F401, E402 - the typed events a run's log holds
from ..store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED  # noqa: F401, E402 - a run's states
from ..store.records import RunRecord, collect, roles_of  # noqa: F401, E402 - the store's read model
from ..store.runstore import DEVICES, EXPLAIN, device_of, read_json  # noqa: F401, E402
from ..study.registry import list_studies, load_study_record, study_membership  # noqa: F401, E402 - studies
from ..study.schema import load_raw  # noqa: F401, E402 - a study file as written

__all__ = ['write_json', 'DataConfig', 'open_source', 'gpu_count', 'gpu_info', 'check_name', 'runs_dir', 'Summary', 'METRICS', 'describe_written', 'CONFIGS', 'MAX_SEED', 'RunSpec', 'baseline_of', 'build_specs', 'RunStore', 'events', 'FAILED', 'FINISHED', 'QUEUED', 'RUNNING', 'STOPPED', 'RunRecord', 'collect', 'roles_of', 'DEVICES', 'EXPLAIN', 'device_of', 'read_json', 'list_studies', 'load_study_record', 'study_membership', 'load_raw', 'DAMAGED', 'Log', 'Queued', 'StudyOutcome', 'StudyStatus', 'Trained', 'check', 'check_data', 'check_runs', 'cuda_elsewhere', 'explain', 'export_tables', 'find_study', 'launch', 'open_store', 'plan_action', 'plan_study', 'queue', 'queue_study', 'remove', 'report', 'resolve_run', 'retry', 'role_word', 'run_facts', 'run_rows', 'run_study_detached', 'run_study_here', 'run_study_on_ray', 'select_runs', 'shift', 'shift_study', 'shift_tables', 'start_workers', 'stop', 'study_records', 'study_status', 'tables', 'target_runs', 'train', 'what_goes', 'why_not', 'worker_plan']
