"""Results: the comparison tables, their export, the HTML report, MLflow.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import UsageError
from ..reports.report import build_report
from ..reports.study import study_ids, study_tables
from ..reports.sweep import write_sweep_figures
from ..reports.table_model import Table, Tables
from ..reports.tables import build, export, table_markdown
from ..store import RunStore
from ..store.records import collect
from ..tracking.mlflow_sync import export_runs
from .studies import find_study


def tables(store: RunStore, study: str | None = None, metric: str | None = "accuracy", **stats) -> Tables:
    """Every table of one study (its runs only, with the roles it gave them) or of every run, in ``metric`` (None:
    the one the runs' tasks are usually read by, ``Tables.usual_metric``; ``.metric`` says which). ``.long`` is the
    long table (a pandas DataFrame: one row per run and split), for scripts and notebooks. ``stats``: interval
    (seeds+images, seeds), correction (holm, bh, none) and threshold (sensitivity's rule on val: youden, or
    sensitivity=0.9), as README's Statistics says."""
    if study:
        return study_tables(store, find_study(store, study)["name"], metric, **stats)
    return build(collect(store), metric, **stats)


def export_tables(result: Tables, out: Path, fmt: str = "csv") -> list[Path]:
    """Write the tables (``fmt``: csv, md, parquet, latex, both, all) and, for a sweep, its gain figures into
    ``out``; the paths written."""
    return export(result, Path(out), fmt) + write_sweep_figures(result, Path(out))


def markdown(table: Table) -> str:
    """One table as Markdown (the format ``--format md`` writes)."""
    return table_markdown(table)


def export_mlflow(store: RunStore, study: str | None = None, uri: str | None = None,
                  experiment: str | None = None) -> tuple[int, int]:
    """Push a study's finished runs (or every run) into MLflow; an exported run is skipped. (exported, skipped)"""
    ids = study_ids(find_study(store, study)) if study else store.list_ids()
    if not ids:
        raise UsageError(f"no runs in {store.root}", field="runs_dir")
    return export_runs(store, ids, uri, experiment)


def report(store: RunStore, study: str | None, metric: str, out: Path, **stats) -> Path:
    """The self-contained HTML report of one study (or of every run); returns its path."""
    return build_report(store, find_study(store, study)["name"] if study else None, metric, Path(out), **stats)


def shift_tables(store: RunStore, name: str, run_ids: Iterable[str]) -> Tables:
    """The tables of the runs just evaluated under shift; given their results ({run id: result}), the robustness
    tables read that request's."""
    wanted = set(run_ids)
    request = next((v.get("key") for v in run_ids.values() if isinstance(v, dict)), None) \
        if isinstance(run_ids, dict) else None
    return build([r for r in collect(store) if r.run_id in wanted],
                 title=f"{name}: accuracy, and robustness under acquisition shift", shift_request=request)
