"""Acquisition shift: finished runs' best checkpoints evaluated under named shifts, for ``kdengine shift`` and a
study's ``[shift]`` alike (no torch at import: the evaluation imports it when called).

Part of kdengine.api."""
from __future__ import annotations

from ..store import RunStore
from .runs import Log, _quiet


def shift_names() -> tuple[str, ...]:
    """The acquisition shifts ``kdengine shift`` applies, by name."""
    from ..data.corruptions import SHIFTS  # cv2 (0.1 s): every command registers its flags at start

    return tuple(SHIFTS)


def shift_runs(store: RunStore, run_ids: list[str], shifts: str = "all", severities: str = "1..5", seed: int = 0,
               external: str | None = None, device: str = "auto", batch_size: int | None = None, force: bool = False,
               log: Log = _quiet) -> dict[str, dict]:
    """Finished runs' best checkpoints under acquisition shift (stored results are read back unless ``force``):
    the one loop ``kdengine shift`` and a study's ``[shift]`` share. {run id: results}"""
    from ..data.corruptions import parse_severities, parse_shifts  # cv2: the shifts' image work

    names, levels = parse_shifts(shifts), parse_severities(severities)  # said before seconds of imports
    from ..shift.evaluate import evaluate_run  # torch: the best checkpoints are evaluated here
    from ..training.device import setup_device  # torch

    dev = setup_device(device)
    return {rid: evaluate_run(store, rid, names, levels, seed, external, dev, batch_size, force, log)
            for rid in run_ids}
