"""One module per CLI command group; each exposes ``register(subparsers)``."""
from __future__ import annotations

from . import data_cmd, explain_cmd, export_cmd, models_cmd, report_cmd, runs_cmd, shift_cmd, study_cmd, train_cmd


def register(sub) -> None:
    for module in (data_cmd, models_cmd, train_cmd, runs_cmd, study_cmd, shift_cmd, explain_cmd, report_cmd, export_cmd):
        module.register(sub)
