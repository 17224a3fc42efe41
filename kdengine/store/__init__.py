"""The run store: the contract between the engine, the TUI and every export (no torch here)."""
from .runstore import STATES, RunStore  # noqa: F401
