"""One module per CLI command group; each exposes ``register(subparsers)``."""
from __future__ import annotations


def register(sub) -> None:
    from . import data_cmd, models_cmd, runs_cmd, study_cmd, train_cmd

    for module in (data_cmd, models_cmd, train_cmd, runs_cmd, study_cmd):
        module.register(sub)
