"""Evaluation of finished runs: the data check, acquisition shift, class activation maps and where a run looks.

Part of kdengine.api (no torch at import: what trains or evaluates imports the engine when called)."""
from __future__ import annotations

from ..data.config import DataConfig, open_source
from ..errors import UsageError
from ..explain.request import DEFAULT_IMAGES as EXPLAIN_IMAGES  # the images explained by default
from ..explain.request import Request
from ..reports.shift_request import study_request
from ..reports.study import study_ids
from ..store import RunStore
from ..store.lifecycle import FINISHED
from ..store.looks import Looks, read_looks
from ..store.records import distinct, read_record
from .robustness import shift_runs
from .runs import Log, _quiet, resolve_run
from .studies import study_record


def check_data(cfg: DataConfig, image_size: int | None = None, skip_bad: bool = False, progress=None) -> dict:
    """Index (and decode, unless ``image_size`` is None) a source; its summary: classes, splits, groups, skips."""
    source = open_source(cfg)
    summary = source.summary()
    if image_size:
        from ..data.cache import build_or_load, require_usable, usable_counts  # cv2: decoding images

        cache = build_or_load(source, image_size, skip_bad=skip_bad, progress=progress)
        summary = source.summary()  # now includes undecodable images, when skipped
        usable = usable_counts(cache, source)
        for split, counts in usable.items():  # the images training will use and their groups, not the files found
            summary["splits"][split].update(counts)
        summary["cache"] = {"path": str(cache.path), "size": image_size, "hit": cache.hit,
                            "usable": {s: c["images"] for s, c in usable.items()}}
        if cache.seen is not None:  # what the files were: colour or grey, their sizes (a cache built before: unknown)
            summary["seen"] = cache.seen
        require_usable(cache, source)  # the same verdict as training's
    summary["usable"] = True
    return summary


def target_runs(store: RunStore, target: str) -> tuple[str, list[str]]:
    """(a name for the output, the run ids) of a STUDY|RUN argument: a study's finished runs, or one run (and
    its finished baseline)."""
    record = study_record(store, target)
    if record is not None:
        name = record.get("name", target)
        finished = [r for r in study_ids(record) if store.exists(r) and store.read_status(r).state == FINISHED]
        if not finished:
            raise UsageError(f"study {name} has no finished runs yet", field="target")
        # a run that repeats another's computation (an older store's copy) is evaluated once, as the tables show it
        kept, _ = distinct([read_record(store, r) for r in finished])
        return name, [r.run_id for r in kept]
    rid = resolve_run(store, target)
    base = read_record(store, rid).baseline_id
    if base and store.exists(base) and store.read_status(base).state == FINISHED:
        return rid, [rid, base]  # the gain under shift needs the baseline under the same shift
    return rid, [rid]


def shift(store: RunStore, target: str, shifts: str | None = None, severities: str | None = None,
          seed: int | None = None, external: str | None = None, device: str = "auto", batch_size: int | None = None,
          force: bool = False, log: Log = _quiet) -> tuple[str, dict[str, dict]]:
    """Evaluate a run's (or a study's finished runs') best checkpoints under acquisition shift; (name, results).

    What is not given comes from a study's own ``[shift]`` where the target is a study with one (so ``kdengine shift
    STUDY`` shows, and reads back, the study's own results), else every shift at severities 1..5, seed 0. Another
    request is kept beside the study's, never in its place (``shift.evaluate``)."""
    if batch_size is not None and not 1 <= batch_size <= 65536:
        raise UsageError(f"the batch size must lie in [1, 65536], got {batch_size}", field="batch_size")
    from ..data.corruptions import parse_severities, parse_shifts  # cv2 (0.1 s), no torch

    parse_shifts(shifts), parse_severities(severities)  # a typo said before the store is read
    name, ids = target_runs(store, target)
    own = study_request((study_record(store, target) or {}).get("config"))
    if own is not None and (shifts, severities, seed, external) == (None, None, None, None):
        log(f"study {name}: its own [shift] request ({len(own['shifts'])} shift(s) at severities "
            f"{', '.join(map(str, own['severities']))}, seed {own['seed']}), read back where it was answered")
    own = own or {}
    shifts = shifts if shifts is not None else ",".join(own.get("shifts") or ["all"])
    severities = severities if severities is not None else ",".join(map(str, own.get("severities") or [])) or "1..5"
    seed = seed if seed is not None else own.get("seed", 0)
    external = external if external is not None else own.get("external")
    return name, shift_runs(store, ids, shifts, severities, seed, external, device, batch_size, force, log)


def explain(store: RunStore, target: str, images: int = EXPLAIN_IMAGES, method: str = "gradcam",
            split: str = "test", seed: int = 0, target_class: str = "true", shift: str | None = None,
            device: str = "auto", force: bool = False, log: Log = _quiet):
    """Class activation maps of a run (with its teachers and baseline) or of a study's finished runs, and the
    KD runs' attention agreement; (name, Outcome)."""
    req = Request(method, split, images, seed, target_class, shift)  # a bad request said before seconds of imports
    name, ids = target_runs(store, target)
    from ..explain.run import explain as explain_runs  # torch and grad-cam: the maps are computed here
    from ..training.device import setup_device  # torch

    return name, explain_runs(store, ids, req, setup_device(device).device, force, log)


def looks(store: RunStore, run_id: str) -> Looks | None:
    """Where a run looks (``store.looks.Looks``: its latest clean maps, with its teachers' and baseline's on the
    same images), or None when ``kdengine explain`` has made none."""
    record = read_record(store, run_id)
    return read_looks(store, run_id, record.spec)
