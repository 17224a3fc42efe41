"""``kdengine report STUDY|--all --out DIR``: a self-contained HTML report of a study (or of every run)."""
from __future__ import annotations

from pathlib import Path

from ..api import Choices
from ..errors import UsageError
from .common import add_runs_dir, store_from
from .study_cmd import add_stats_args, stats_of


def register(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report: tables, curves, confusion matrices, "
                                      "robustness")
    p.add_argument("study", nargs="?", metavar="STUDY", help="a study (name, file or preset)")
    p.add_argument("--all", action="store_true", help="every run in the store instead of one study")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder for report.html")
    p.add_argument("--metric", choices=tuple(Choices.METRICS), default="accuracy")
    add_stats_args(p)
    add_runs_dir(p)
    p.set_defaults(handler=run_report)


def run_report(args) -> int:
    if bool(args.study) == bool(args.all):
        raise UsageError("name a study, or pass --all for every run in the store")
    print(f"wrote {store_from(args).report(args.study, args.metric, Path(args.out), **stats_of(args))}")
    return 0
