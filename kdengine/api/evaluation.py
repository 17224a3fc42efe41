"""Evaluation of finished runs: the data check, acquisition shift and class activation maps.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from ..data.config import open_source
from ..errors import UsageError
from ..explain.request import METHODS as EXPLAIN_METHODS  # noqa: F401 - the CAMs kdengine explain offers
from ..explain.request import TARGETS as EXPLAIN_TARGETS  # noqa: F401 - the class each map answers for
from ..explain.request import DEFAULT_IMAGES as EXPLAIN_IMAGES  # the images explained by default
from ..explain.request import Request
from ..reports.study import study_ids
from ..store import RunStore
from ..store.lifecycle import FINISHED
from ..store.records import read_record
from .runs import Log, _quiet, resolve_run
from .studies import _study_record


def shift_names() -> tuple[str, ...]:
    """The acquisition shifts ``kdengine shift`` applies, by name."""
    from ..data.corruptions import SHIFTS  # cv2 (0.1 s): every command registers its flags at start

    return tuple(SHIFTS)


def check_data(cfg, image_size: int | None, skip_bad: bool, progress=None) -> dict:
    """Index (and decode, unless ``image_size`` is None) a source; its summary: classes, splits, groups, skips."""
    from ..data.cache import build_or_load, require_usable, usable_counts  # cv2: decoding images

    source = open_source(cfg)
    summary = source.summary()
    if image_size:
        cache = build_or_load(source, image_size, skip_bad=skip_bad, progress=progress)
        summary = source.summary()  # now includes undecodable images, when skipped
        usable = usable_counts(cache, source.class_names)
        for split, counts in usable.items():  # the images training will use, not the files found
            summary["splits"][split].update(counts)
        summary["cache"] = {"path": str(cache.path), "size": image_size, "hit": cache.hit,
                            "usable": {s: c["images"] for s, c in usable.items()}}
        require_usable(cache, source)  # the same verdict as training's
    summary["usable"] = True
    return summary


def target_runs(store: RunStore, target: str) -> tuple[str, list[str]]:
    """(a name for the output, the run ids) of a STUDY|RUN argument: a study's finished runs, or one run (and
    its finished baseline)."""
    record = _study_record(store, target)
    if record is not None:
        name = record.get("name", target)
        finished = [r for r in study_ids(record) if store.exists(r) and store.read_status(r).state == FINISHED]
        if not finished:
            raise UsageError(f"study {name} has no finished runs yet")
        return name, finished
    rid = resolve_run(store, target)
    base = read_record(store, rid).baseline_id
    if base and store.exists(base) and store.read_status(base).state == FINISHED:
        return rid, [rid, base]  # the gain under shift needs the baseline under the same shift
    return rid, [rid]


def shift(store: RunStore, target: str, shifts: str = "all", severities: str = "1..5", seed: int = 0,
          external: str | None = None, device: str = "auto", batch_size: int | None = None, force: bool = False,
          log: Log = _quiet) -> tuple[str, dict[str, dict]]:
    """Evaluate a run's (or a study's finished runs') best checkpoints under acquisition shift; (name, results)."""
    if batch_size is not None and not 1 <= batch_size <= 65536:
        raise UsageError(f"--batch-size must lie in [1, 65536], got {batch_size}")
    name, ids = target_runs(store, target)
    return name, shift_runs(store, ids, shifts, severities, seed, external, device, batch_size, force, log)


def shift_runs(store: RunStore, run_ids: list[str], shifts: str = "all", severities: str = "1..5", seed: int = 0,
               external: str | None = None, device: str = "auto", batch_size: int | None = None, force: bool = False,
               log: Log = _quiet) -> dict[str, dict]:
    """Finished runs' best checkpoints under acquisition shift (stored results are read back unless ``force``):
    the one loop ``kdengine shift`` and a study's ``[shift]`` share. {run id: results}"""
    from ..data.corruptions import parse_severities, parse_shifts  # cv2: the shifts' image work
    from ..shift.evaluate import evaluate_run  # torch: the best checkpoints are evaluated here
    from ..training.device import setup_device  # torch

    names, levels = parse_shifts(shifts), parse_severities(severities)
    dev = setup_device(device)
    return {rid: evaluate_run(store, rid, names, levels, seed, external, dev, batch_size, force, log)
            for rid in run_ids}


def explain(store: RunStore, target: str, images: int = EXPLAIN_IMAGES, method: str = "gradcam",
            split: str = "test", seed: int = 0, target_class: str = "true", shift: str | None = None,
            device: str = "auto", force: bool = False, log: Log = _quiet):
    """Class activation maps of a run (with its teachers and baseline) or of a study's finished runs, and the
    KD runs' attention agreement; (name, Outcome)."""
    from ..explain.run import explain as explain_runs  # torch and grad-cam: the maps are computed here
    from ..training.device import setup_device  # torch

    req = Request(method, split, images, seed, target_class, shift)
    name, ids = target_runs(store, target)
    return name, explain_runs(store, ids, req, setup_device(device).device, force, log)
