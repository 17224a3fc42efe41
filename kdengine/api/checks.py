"""The one set of checks before anything is queued: for ``kdengine train`` and ``study run``, kdtui's launch and its
study files (no torch at import: what needs timm runs where torch may be imported, else in a child process)."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Iterable

from ..errors import UsageError
from ..runspec import RunSpec


def check(specs: Iterable[RunSpec], data: bool = True, decode: bool = False, isolate: bool | None = None) -> None:
    """Model names, whether each model takes its image size, local weights files, pretrained weights, the data
    source (``data``) and its images decoded into the cache (``decode``). Raises one UsageError line.

    What needs timm and torch (``preflight.needs_torch``) runs in a child process where the caller has not
    imported torch (``isolate`` None: decided so; kdtui never imports it), else in this process."""
    specs = list(specs)
    if isolate is None:
        isolate = "torch" not in sys.modules
    if not isolate:
        from ..preflight import preflight  # timm, on the meta device: proves the models before queueing

        preflight(specs, check_data=data, decode=decode)
        return
    from ..models.names import check_names  # torch-free: a mistyped name is refused at once, in this process
    from ..preflight import _all_specs, needs_torch

    check_names({s.model for s in _all_specs(specs)})
    if not (needs_torch(specs) or data):
        return
    flags = (["--data"] if data else []) + (["--decode"] if decode else [])
    proc = subprocess.run([sys.executable, "-m", "kdengine.preflight", *flags], capture_output=True, text=True,
                          input=json.dumps([s.to_dict() for s in specs]), timeout=1800)
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or ["the checks refused the runs"])[-1].removeprefix("error: ")
        raise UsageError(line)
