"""A study's own records and tables: its runs only, with the roles the study gave them (no torch)."""
from __future__ import annotations

from ..errors import UsageError
from ..store import RunStore
from ..study.registry import list_studies, load_study_record
from ..store.records import RunRecord, collect
from .shift_request import study_request
from .tables import Tables, build


def study_ids(record: dict) -> list[str]:
    """The run ids a study record names."""
    return [p["run_id"] for p in record.get("runs", []) if isinstance(p, dict) and "run_id" in p]


def study_records(store: RunStore, name: str) -> tuple[dict, list[RunRecord]]:
    record = load_study_record(store, name)
    if record is None:
        raise UsageError(f"no study '{name}' in {store.root} (studies: {', '.join(list_studies(store)) or 'none yet'})")
    ids = set(study_ids(record))
    return record, [r for r in collect(store) if r.run_id in ids]


def study_tables(store: RunStore, name: str, metric: str | None = "accuracy", **stats) -> Tables:
    """The tables of one study: its runs only, with the roles the study gave them, its primary comparison (the
    study file's ``primary``) and its own request under shift (the study file's ``[shift]``: another ``kdengine
    shift`` of its runs never takes its place)."""
    record, records = study_records(store, name)
    planned = [p for p in record["runs"] if isinstance(p, dict) and "run_id" in p]
    roles = {p["run_id"]: set(p.get("roles", ())) for p in planned}
    axes = study_axes(record)
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    stats.setdefault("primary", config.get("primary") if isinstance(config.get("primary"), str) else "")
    stats.setdefault("shift_request", study_request(config))
    return build(records, metric, roles=roles, title=f"Study {record.get('name', name)}", planned=len(planned),
                 study=name, axes=axes, **stats)


def study_axes(record: dict) -> dict[str, list]:
    """A swept study's axes, every value asked for: {"kd.temperature": [1, 2, 4, 8]}; {} when it sweeps nothing."""
    axes = record.get("axes")
    return {k: v for k, v in axes.items() if isinstance(k, str) and isinstance(v, list)} \
        if isinstance(axes, dict) else {}
