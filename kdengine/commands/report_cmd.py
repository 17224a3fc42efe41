"""``kdengine report STUDY|--all --out DIR``: a self-contained HTML report of a study (or of every run)."""
from __future__ import annotations

from ..errors import UsageError
from .common import add_runs_dir, store_from


def register(sub) -> None:
    from ..reports.tables import METRICS

    p = sub.add_parser("report", help="write a self-contained HTML report: tables, curves, confusion matrices, "
                                      "robustness")
    p.add_argument("study", nargs="?", metavar="STUDY", help="a study (name, file or preset)")
    p.add_argument("--all", action="store_true", help="every run in the store instead of one study")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder for report.html")
    p.add_argument("--metric", choices=tuple(METRICS), default="accuracy")
    add_runs_dir(p)
    p.set_defaults(handler=run_report)


def build_report(store, study: str | None, metric: str, out):
    """The report of one study (or of every run when ``study`` is None); returns its path."""
    from ..reports.collect import collect
    from ..reports.html import write_report
    from ..reports.tables import build
    from ..study.registry import load_study_record, study_tables

    if study:
        record = load_study_record(store, study)
        tables = study_tables(store, study, metric)
        ids = {p["run_id"] for p in record["runs"] if isinstance(p, dict) and "run_id" in p}
        records = [r for r in collect(store) if r.run_id in ids]
    else:
        records = collect(store)
        tables = build(records, metric, title="kdstudy: every run")
    if tables.finished == 0:
        raise UsageError("no finished runs to report on yet")
    return write_report(store, tables, records, out)


def run_report(args) -> int:
    from pathlib import Path

    from .study_cmd import _record

    if bool(args.study) == bool(args.all):
        raise UsageError("name a study, or pass --all for every run in the store")
    store = store_from(args)
    name = _record(store, args.study)["name"] if args.study else None
    print(f"wrote {build_report(store, name, args.metric, Path(args.out))}")
    return 0
