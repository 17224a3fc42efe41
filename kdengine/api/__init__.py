"""kdstudy's service layer: what a person (or a script, or a notebook) can ask of kdstudy, each in one place.

The CLI's commands parse their arguments and call one function here; kdtui calls the same functions, so a
retry from the TUI and from the CLI are the same code, as harlequin's UI talks only to its adapter. A bad
request raises a one-line :class:`~kdengine.errors.KDError`; each front end says it its own way.

Importing it never imports torch (kdtui uses it): the functions that train or evaluate import the
engine when they are called (those imports are listed, with their reason, in ``.importlinter``).

A package by use case: ``runs``, ``workers``, ``results``, ``studies``, ``evaluation``; every name a front end uses is here."""
from __future__ import annotations

from .runs import Log, Queued, Trained, check, check_runs, cuda_elsewhere, doctor, open_store, plan_action, queue, remove, resolve_run, retry, run_facts, run_rows, spec_from_settings, stop, train, train_here, what_goes  # noqa: F401
from .workers import launch, serve, start_workers, worker_plan  # noqa: F401
from .results import export_mlflow, export_tables, report, shift_tables, tables  # noqa: F401
from .studies import unread_axes  # noqa: F401
from .studies import SchemaSection, StudyOutcome, StudyStatus, find_study, plan_study, queue_study, run_study_detached, run_study_here, run_study_on_ray, select_runs, shift_study, study_schema, study_status  # noqa: F401
from .evaluation import EXPLAIN_IMAGES, EXPLAIN_METHODS, EXPLAIN_TARGETS, check_data, explain, shift, shift_names, target_runs  # noqa: F401
from .models import ModelEntry, model_catalogue, model_params  # noqa: F401
from .planning import Plan, plan_seeds  # noqa: F401 - kdengine study plan: seeds for a stated gain
from ..reports.study import study_records  # noqa: F401 - a study's records, for scripts
from ..store.actions import why_not  # noqa: F401 - what may be done to a run (kdtui's keys)

# What the front ends read besides the use cases, re-exported so that kdtui depends on kdengine.api alone (the
# "one-door" contract): the store's files and states, a run's spec, studies, the tables' cells, the data source,
# the GPUs. All torch-free.
from ..atomic import write_json  # noqa: F401, E402 - the launch form remembers its values
from ..data.config import DataConfig, open_source  # noqa: F401, E402 - the launch form checks its data as typed
from ..execution.spawn import gpu_count  # noqa: F401, E402 - the worker dialog offers the GPUs
from ..execution.packing import gpu_info  # noqa: F401, E402 - the Workers screen shows them
from ..models.names import check_name  # noqa: F401, E402 - the launch form checks a model name as typed
from ..paths import runs_dir  # noqa: F401, E402 - where the store is by default
from ..reports.stats import Summary  # noqa: F401, E402 - a table's cell
from ..reports.table_model import cell_detail, cell_text  # noqa: F401, E402 - a cell as every front end writes it
from ..reports.tables import METRICS, describe_written  # noqa: F401, E402 - the tables' metrics, what an export wrote
from ..runspec import CONFIGS, MAX_SEED, RunSpec, baseline_of, build_specs  # noqa: F401, E402 - a run's spec
from ..store import RunStore  # noqa: F401, E402
from ..store import events  # noqa: F401, E402 - the typed events a run's log holds
from ..store.lifecycle import FAILED, FINISHED, QUEUED, RUNNING, STOPPED  # noqa: F401, E402 - a run's states
from ..store.records import RunRecord, collect, roles_of  # noqa: F401, E402 - the store's read model
from ..store.rows import RunRow  # noqa: F401, E402 - a run's row in a list
from ..store.runstore import DEVICES, EXPLAIN, read_json  # noqa: F401, E402
from ..store.status import RunStatus  # noqa: F401, E402 - a run's status, typed
from ..study.registry import list_studies, load_study_record, study_membership  # noqa: F401, E402 - studies
from ..study.schema import load_raw  # noqa: F401, E402 - a study file as written

# ... and what the CLI's commands read besides (the "one-door" contract holds them too): the choices their flags
# offer, the study grid's axes, the tables as Markdown, the store doctor's words. All torch-free.
from ..data.config import SOURCE_HELP  # noqa: F401, E402 - how a data source is written
from ..execution.packing import parse_runs_per_gpu  # noqa: F401, E402 - --runs-per-gpu N|auto
from ..execution.ray_executor import parse_executor  # noqa: F401, E402 - --executor local|ray[=ADDRESS]
from ..metric_names import SPLITS  # noqa: F401, E402 - train, val, test
from ..models.names import check_names  # noqa: F401, E402 - a dry run checks its model names, torch-free
from ..reports.correction import CORRECTIONS  # noqa: F401, E402 - --correction
from ..reports.stats import INTERVALS  # noqa: F401, E402 - --interval
from ..reports.tables import FORMATS, table_markdown  # noqa: F401, E402 - --format; a table on the terminal
from ..runspec import differences  # noqa: F401, E402 - how [teacher_train] differs from [train]
from ..store.doctor import describe as describe_findings  # noqa: F401, E402 - the doctor's findings in words
from ..store.lifecycle import STATES, STATES_BY_PROGRESS  # noqa: F401, E402 - --state; a study's progress
from ..store.queue import teacher_notes  # noqa: F401, E402 - which teachers a run reuses, said before training
from ..study import axes  # noqa: F401, E402 - a sweep's axes, values and points
from ..study.schema import PRESETS  # noqa: F401, E402 - the studies shipped with kdstudy
from ..tracking.trackers import TRACKERS  # noqa: F401, E402 - --tracker (the trackers import their clients when used)

__all__ = ['CONFIGS', 'CORRECTIONS', 'DEVICES', 'DataConfig', 'EXPLAIN', 'EXPLAIN_IMAGES', 'EXPLAIN_METHODS', 'EXPLAIN_TARGETS', 'FAILED', 'FINISHED', 'FORMATS', 'INTERVALS', 'Log', 'MAX_SEED', 'METRICS', 'ModelEntry', 'PRESETS', 'Plan', 'QUEUED', 'Queued', 'RUNNING', 'RunRecord', 'RunRow', 'RunSpec', 'RunStatus', 'RunStore', 'SOURCE_HELP', 'SPLITS', 'STATES', 'STATES_BY_PROGRESS', 'STOPPED', 'SchemaSection', 'StudyOutcome', 'StudyStatus', 'Summary', 'TRACKERS', 'Trained', 'axes', 'baseline_of', 'build_specs', 'cell_detail', 'cell_text', 'check', 'check_data', 'check_name', 'check_names', 'check_runs', 'collect', 'cuda_elsewhere', 'describe_findings', 'describe_written', 'differences', 'doctor', 'events', 'explain', 'export_mlflow', 'export_tables', 'find_study', 'gpu_count', 'gpu_info', 'launch', 'list_studies', 'load_raw', 'load_study_record', 'model_catalogue', 'model_params', 'open_source', 'open_store', 'parse_executor', 'parse_runs_per_gpu', 'plan_action', 'plan_seeds', 'plan_study', 'queue', 'queue_study', 'read_json', 'remove', 'report', 'resolve_run', 'retry', 'roles_of', 'run_facts', 'run_rows', 'run_study_detached', 'run_study_here', 'run_study_on_ray', 'runs_dir', 'select_runs', 'serve', 'shift', 'shift_names', 'shift_study', 'shift_tables', 'spec_from_settings', 'start_workers', 'stop', 'study_membership', 'study_records', 'study_schema', 'study_status', 'table_markdown', 'tables', 'target_runs', 'teacher_notes', 'unread_axes', 'train', 'train_here', 'what_goes', 'why_not', 'worker_plan', 'write_json']
