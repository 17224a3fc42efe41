"""``kdengine export mlflow``: finished runs from the run store into an MLflow server, from one place."""
from __future__ import annotations

from .common import add_runs_dir, store_from


def register(sub) -> None:
    export = sub.add_parser("export", help="push finished runs into another tool")
    esub = export.add_subparsers(dest="export_command", required=True)
    p = esub.add_parser("mlflow", help="push finished runs into MLflow (safe to repeat: exported runs are skipped)")
    p.add_argument("--study", default=None, metavar="STUDY", help="only this study's runs (default: every run)")
    p.add_argument("--uri", default=None, metavar="URI",
                   help="the tracking server (default: $MLFLOW_TRACKING_URI, else sqlite:///<runs>/mlflow.db)")
    p.add_argument("--experiment", default=None, metavar="NAME", help="default: $MLFLOW_EXPERIMENT_NAME or kdstudy")
    add_runs_dir(p)
    p.set_defaults(handler=run_export_mlflow)


def run_export_mlflow(args) -> int:
    exported, skipped = store_from(args).export_mlflow(args.study, args.uri, args.experiment)
    print(f"exported {exported} run(s); {skipped} already in MLflow")
    return 0
