"""timm's model names, without torch: a mistyped name is refused in milliseconds, not after timm's import.

The names of the timm version kdstudy was released with ship as ``timm_names.txt``; with another installed
version the names are listed once, in a subprocess, and kept in the data folder (``timm-names-<version>.txt``).
"""
from __future__ import annotations

import subprocess
import sys
from functools import lru_cache
from importlib import metadata, resources

from ..atomic import write_text
from ..errors import UsageError
from ..options import did_you_mean
from ..paths import data_dir
from .architectures import known_names

SHIPPED = "timm_names.txt"


def _read(text: str) -> tuple[str, frozenset[str]]:
    lines = text.splitlines()
    version = lines[0].split()[2].rstrip(":") if lines and lines[0].startswith("# timm ") else ""
    return version, frozenset(line.strip() for line in lines[1:] if line.strip() and not line.startswith("#"))


def installed_timm() -> str:
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return ""


@lru_cache(maxsize=1)
def timm_names() -> frozenset[str]:
    """Every model name the installed timm knows."""
    version = installed_timm()
    shipped_version, shipped = _read(resources.files("kdengine.models").joinpath(SHIPPED).read_text())
    if version == shipped_version:
        return shipped
    cached = data_dir() / f"timm-names-{version}.txt"
    if cached.is_file():
        return _read(cached.read_text())[1]
    out = subprocess.run([sys.executable, "-c", "import timm; print('\\n'.join(timm.list_models()))"],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:  # timm cannot be imported here: what shipped is the best list there is
        return shipped
    text = f"# timm {version}: timm.list_models()\n{out.stdout}"
    try:
        write_text(cached, text)
    except (OSError, UsageError):
        pass  # an unwritable data folder: listed again next time
    return _read(text)[1]


def check_name(name: str) -> str:
    """``name`` if timm knows it; else UsageError suggesting the closest names."""
    names = timm_names()
    if name in names:
        return name
    pool = sorted(set(known_names()) | names)
    hint = did_you_mean(name, pool) or "; `kdengine models` lists the thesis's models"
    raise UsageError(f"unknown model '{name}'{hint}")


def check_names(names) -> None:
    for name in sorted(names):
        check_name(name)
