"""The table of screens. Each screen module registers its screen here (``@register_screen``: its mode name, its
key, its title and what it is for); the app takes its modes, its screen keys, the help's rows and the command
palette's entries from this table alone, so that a new screen is one module in this package (and its test).

A screen class may declare ``HELP`` (its keys, as (keys, what) rows for the help) and ``COMMANDS`` (palette entries
as (title, help, action on the screen))."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class ScreenEntry:
    name: str  # the app's mode: "runs"
    key: str  # the key that shows it: "1"
    title: str  # "Runs"
    description: str  # what it is for, in the palette
    screen: type  # the Screen class


SCREENS: dict[str, ScreenEntry] = {}


def register_screen(name: str, key: str, title: str, description: str):
    """Register the decorated Screen class as the app's mode ``name``, shown by ``key``."""

    def register(cls: type) -> type:
        taken = next((e for e in SCREENS.values() if e.key == key and e.name != name), None)
        if taken is not None:
            raise ValueError(f"screen key {key!r} of {name!r} is {taken.name!r}'s already")
        SCREENS[name] = ScreenEntry(name, key, title, description, cls)
        return cls

    return register


def screens() -> list[ScreenEntry]:
    """Every registered screen, by key (the modules of this package register theirs when imported)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(SCREENS.values(), key=lambda e: e.key)
