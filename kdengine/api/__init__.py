"""kdstudy's service layer: one typed handle on a run store, whose methods are what a person (or a script, or a
notebook) can ask of kdstudy.

    from kdengine import api

    store = api.open("runs")                  # api.Store: every use case, as a method
    rows = store.rows()                       # [api.RunRow]: what every list of runs shows
    detail = store.detail(rows[0].run_id)     # api.RunDetail: its curves, confusion matrix, metrics
    store.tables(study="demo").long           # the long table: a pandas DataFrame, one row per run and split

The CLI's commands and kdtui call the same methods, as harlequin's app talks only to its adapter's connection,
and each words what they return its own way: the records hold facts, never display text or a CLI word. A bad
request raises a one-line :class:`~kdengine.errors.KDError` whose ``field`` names what is at fault.

This package exports the handle and its types, nothing else. Importing it never imports torch (kdtui uses it):
the use cases that train or evaluate import the engine when they are called (each listed, with its reason, in
pyproject.toml's import contracts)."""
from __future__ import annotations

from ..reports.stats import Summary
from ..reports.table_model import Table, Tables
from ..runspec import RunSpec
from ..store.actions import Plan, Removal
from ..store.curves import Curves
from ..store.detail import RunDetail
from ..store.doctor import Finding
from ..store.facts import BaselineFact, RunFacts, TeacherFact
from ..store.lifecycle import State
from ..store.looks import LookPartner, Looks
from ..store.queue import TeacherPlan
from ..store.rows import RunRow
from ..store.status import RunStatus
from .choices import Choices
from .handle import Store, open
from .models import ModelEntry
from .planning import SeedPlan
from .runs import Queued, Removed, Retried, Stopped, Trained
from .studies import SchemaSection, StudyOutcome, StudyPlan, StudyProgress, StudyStatus
from .workers import Launched, WorkerPlan

__all__ = [
    # the handle
    "open", "Store", "Choices",
    # a run: its row, its detail and facts, what may be done to it, and what was done
    "State", "RunRow", "RunStatus", "RunDetail", "Curves", "RunFacts", "TeacherFact", "BaselineFact", "Looks",
    "LookPartner", "Stopped", "Retried", "Removed", "Removal", "Plan", "Finding",
    # queueing and training
    "RunSpec", "Queued", "TeacherPlan", "Launched", "Trained", "WorkerPlan",
    # studies, results, models
    "StudyPlan", "StudyStatus", "StudyProgress", "StudyOutcome", "SchemaSection", "Tables", "Table", "Summary",
    "ModelEntry", "SeedPlan",
]
