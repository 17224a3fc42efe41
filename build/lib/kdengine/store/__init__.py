"""The run store: the contract between the engine, the TUI and every export (no torch here)."""
from .runstore import RunStore, STATES  # noqa: F401
