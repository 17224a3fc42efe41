"""The handle on a run store: ``api.open(runs_dir)`` returns a :class:`Store` whose methods are kdstudy's use
cases, each one a function of this package (by use case: ``runs``, ``workers``, ``studies``, ``results``,
``evaluation``, ``models``) bound to the store, with that function's name, signature and docstring.

Every method returns a typed record or raises one-line :class:`~kdengine.errors.KDError` (whose ``field`` names
what is at fault); none returns display text or names a CLI flag: each front end words what it gets. The methods
that need no store (the checks, the catalogues, a study file's plan) are static: ``api.Store.check_data(cfg)``."""
from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Callable

from ..execution.packing import parse_runs_per_gpu
from ..execution.ray_executor import parse_executor
from ..store import RunStore
from . import checks, evaluation, models, planning, results, robustness, runs
from . import studies as study_cases  # (the handle's own methods are named studies and workers)
from . import workers as worker_cases


def _on_store(use_case: Callable) -> Callable:
    """``use_case(store, ...)`` as a method: called with this handle's run store."""

    @functools.wraps(use_case)
    def method(self: "Store", *args, **kwargs):
        return use_case(self._store, *args, **kwargs)

    signature = inspect.signature(use_case)  # help() shows the use case's parameters, its store taken as self
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(parameters=[self_param, *list(signature.parameters.values())[1:]])
    return method


class Store:
    """kdstudy on one run store (``api.open``): every use case, as a method."""

    def __init__(self, store: RunStore) -> None:
        self._store = store

    @property
    def root(self) -> Path:
        """Where the run store is."""
        return self._store.root

    def __repr__(self) -> str:
        return f"kdengine.api.Store({str(self.root)!r})"

    # -- runs: reading them ----------------------------------------------------------------------------------------
    rows = _on_store(runs.run_rows)
    detail = _on_store(runs.run_detail)
    status = _on_store(runs.run_status)
    header = _on_store(runs.run_header)
    facts = _on_store(runs.facts)
    looks = _on_store(evaluation.looks)
    finished = _on_store(runs.finished_ids)
    resolve = _on_store(runs.resolve_run)
    select = _on_store(study_cases.select_runs)
    # -- runs: acting on them --------------------------------------------------------------------------------------
    stop = _on_store(runs.stop)
    retry = _on_store(runs.retry)
    remove = _on_store(runs.remove)
    what_goes = _on_store(runs.what_goes)
    plan_action = _on_store(runs.plan_action)
    doctor = _on_store(runs.doctor)
    # -- queueing, launching, training -----------------------------------------------------------------------------
    spec = _on_store(runs.spec_from_settings)
    queue = _on_store(runs.queue)
    teacher_plans = _on_store(runs.teachers_of)
    launch = _on_store(worker_cases.launch)
    train = _on_store(runs.train)
    train_here = _on_store(runs.train_here)
    check = staticmethod(checks.check)
    cuda_elsewhere = staticmethod(runs.cuda_elsewhere)
    # -- workers and GPUs ------------------------------------------------------------------------------------------
    start_workers = _on_store(worker_cases.start_workers)
    work_here = _on_store(worker_cases.work_here)
    worker_plan = _on_store(worker_cases.worker_plan)
    workers = _on_store(worker_cases.live_workers)
    worker_logs = _on_store(worker_cases.worker_logs)
    gpus = staticmethod(worker_cases.gpus)
    gpu_count = staticmethod(worker_cases.count_gpus)
    parse_runs_per_gpu = staticmethod(parse_runs_per_gpu)
    # -- studies ---------------------------------------------------------------------------------------------------
    studies = _on_store(study_cases.study_names)
    study = _on_store(study_cases.find_study)
    study_status = _on_store(study_cases.study_status)
    study_progress = _on_store(study_cases.study_progress)
    plan_study = _on_store(study_cases.plan_study)
    study_file = staticmethod(study_cases.study_file)
    study_schema = staticmethod(study_cases.study_schema)
    queue_study = _on_store(study_cases.queue_study)
    run_study_detached = _on_store(study_cases.run_study_detached)
    run_study_here = _on_store(study_cases.run_study_here)
    run_study_on_ray = _on_store(study_cases.run_study_on_ray)
    parse_executor = staticmethod(parse_executor)
    # -- results ---------------------------------------------------------------------------------------------------
    tables = _on_store(results.tables)
    export_tables = staticmethod(results.export_tables)
    markdown = staticmethod(results.markdown)
    report = _on_store(results.report)
    export_mlflow = _on_store(results.export_mlflow)
    shift_tables = _on_store(results.shift_tables)
    plan_seeds = _on_store(planning.plan_seeds)
    # -- evaluation ------------------------------------------------------------------------------------------------
    check_data = staticmethod(evaluation.check_data)
    shift = _on_store(evaluation.shift)
    shift_names = staticmethod(robustness.shift_names)
    explain = _on_store(evaluation.explain)
    # -- models ----------------------------------------------------------------------------------------------------
    model_catalogue = staticmethod(models.model_catalogue)
    model_params = staticmethod(models.model_params)
    check_name = staticmethod(models.check_name)
    check_names = staticmethod(models.check_names)
    # -- a front end's own settings, kept in the store -------------------------------------------------------------
    load_settings = _on_store(runs.load_settings)
    save_settings = _on_store(runs.save_settings)


def open(runs_dir: str | os.PathLike | None = None, write: bool = False, check: bool = True) -> Store:  # noqa: A001
    """kdstudy on the run store ``runs_dir`` names (else $KDSTUDY_HOME, else ./runs). With ``check``, a place that
    is a file (or inside one), or with ``write`` one this user cannot write, is refused in one line; without it the
    handle opens anyway and each use case says so when it reaches the store (an app that starts before the store
    exists)."""
    return Store(runs.open_runs(runs_dir, write) if check else RunStore(runs.runs_dir(runs_dir)))
