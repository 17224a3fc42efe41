"""The store's read model: every run of a store as a record (no torch, no pandas), which the TUI, the CLI and the
tables share. It lives in the store, beside what it reads, so that no reader of the store depends on reports.

One damaged run never hides the others: a run whose spec.json is missing, garbage or of the wrong
shape becomes a record in state ``damaged`` with the reason, and every other run reads as usual.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import strategy_catalog as catalog
from ..errors import UsageError
from ..metric_names import SPLITS  # noqa: F401 - the tables read it from here too
from ..runspec import RunSpec, baseline_of
from .lifecycle import FINISHED, State
from .runstore import RunStore
from .status import RunStatus
from .runstore import EXPLAIN, PREDICTIONS, SHIFT, read_json, read_predictions


class OfSpec:
    """What a record of a run knows from its spec (``self.spec``: None when the run is damaged)."""

    spec: RunSpec | None

    @property
    def kind(self) -> str:
        return self.spec.kind if self.spec else "?"

    @property
    def model(self) -> str:
        return self.spec.model if self.spec else "?"

    @property
    def seed(self) -> int | None:
        return self.spec.seed if self.spec else None

    @property
    def strategy(self) -> str | None:
        return self.spec.strategy if self.spec else None

    @property
    def regime(self) -> str | None:
        return self.spec.regime if self.spec else None

    @property
    def teacher_ids(self) -> list[str]:
        return [t.run_id for t in self.spec.teachers] if self.spec else []

    @property
    def baseline_id(self) -> str | None:
        """Its baseline (the student trained alone), when it has one."""
        base = baseline_of(self.spec) if self.spec else None
        return base.run_id if base else None


@dataclass
class RunRecord(OfSpec):
    run_id: str
    spec: RunSpec | None  # None when the run is damaged
    status: RunStatus
    metrics: dict | None
    damage: str | None = None  # why the run cannot be read, when it cannot
    shift: dict | None = None  # one request's results under acquisition shift (the tables choose which; see shifts)
    explain: dict | None = None  # explain.json: its attention maps and, for a KD run, their agreement, once made
    run_dir: Path | None = None  # where its files are (None: a record made in memory)
    # predictions.npz, read on first use (the tables' intervals over test images); a simulation sets it directly
    preds: Any = field(default=None, repr=False)
    # shift.json: every request's results under acquisition shift, by request (kdengine shift keeps each)
    shifts: dict = field(default_factory=dict, repr=False)
    # the per-image predictions of ``shift``'s request (shift/<request>.npz), read on first use; a simulation sets it
    shift_preds: Any = field(default=None, repr=False)

    def predictions(self, split: str) -> dict | None:
        """This run's per-image predictions on ``split`` (row, label, pred), or None: not stored
        (a run from before they were), not a predicted split (train), or not finished."""
        if self.preds is None and self.run_dir is not None and self.finished:
            self.preds = _write_once(Path(self.run_dir) / PREDICTIONS, read=_correctness) or {}
        return (self.preds or {}).get(split)

    def shift_predictions(self) -> dict | None:
        """The per-image predictions under ``shift``'s request: {"row", "label", "clean": pred, "cells": {shift:
        {severity: pred}}, "external": {"label", "pred"} or None}, or None (evaluated before they were kept)."""
        if self.shift_preds is None and self.run_dir is not None and self.shift and self.shift.get("per_image"):
            self.shift_preds = _write_once(Path(self.run_dir) / self.shift["per_image"], read=read_shift_arrays) or {}
        return self.shift_preds or None

    @property
    def state(self) -> State:
        return self.status.state

    @property
    def damaged(self) -> bool:
        """Its files cannot be read as a run's (``damage`` says why): a flag beside its state, not a state."""
        return self.damage is not None

    @property
    def finished(self) -> bool:
        return self.state == FINISHED and self.metrics is not None

    @property
    def label(self) -> str:
        """What the run is in a word: its KD strategy, or ``ce`` / ``defective`` for a cross-entropy run."""
        return self.spec.role_label if self.spec else "damaged"

    @property
    def teacher_label(self) -> str:
        if not self.spec or self.spec.kind == "ce":
            return ""
        return catalog.get(self.spec.strategy).teacher_label([t.model for t in self.spec.teachers], self.model)

    def metric(self, split: str, name: str = "accuracy") -> float | None:
        if name == "shift_mean":  # accuracy under acquisition shift: on the test split only
            return self.shift.get("mean_accuracy") if self.shift and split == "test" else None
        if not self.metrics or not isinstance(self.metrics.get(split), dict):
            return None
        value = self.metrics[split].get(name)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def accuracy(self, split: str) -> float | None:
        return self.metric(split, "accuracy")

    def gain_over(self, base: "RunRecord | None", split: str = "test") -> float | None:
        """This run's accuracy minus its baseline's on one split; None unless both have one (base finished)."""
        mine = self.accuracy(split)
        theirs = base.accuracy(split) if base is not None and base.finished else None
        return mine - theirs if mine is not None and theirs is not None else None


_WRITE_ONCE: dict[tuple, Any] = {}


def _correctness(path):
    """What the tables need of predictions.npz (not the probabilities: a sweep's hundreds of runs stay small)."""
    return read_predictions(path, ("row", "label", "pred"))


def read_shift_arrays(path) -> dict | None:
    """shift/<request>.npz as the tables read it (see RunRecord.shift_predictions); None when unreadable."""
    import zipfile  # with numpy: only a reader of per-image predictions

    import numpy as np  # numpy: only a reader of per-image predictions

    try:
        with np.load(path, allow_pickle=False) as z:
            cells: dict[str, dict[str, Any]] = {}
            for k in z.files:
                if k.startswith("cell:"):
                    _, name, severity = k.split(":")
                    cells.setdefault(name, {})[severity] = z[k]
            external = {"label": z["external_label"], "pred": z["external_pred"]} if "external_pred" in z.files \
                else None
            return {"row": z["row"], "label": z["label"], "clean": z["clean"], "cells": cells, "external": external}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def shift_entries(doc) -> dict[str, dict]:
    """shift.json's results by request: {slug: result}. A file from before requests were kept (one result at its
    top) is one request, ``earlier``."""
    if not isinstance(doc, dict):
        return {}
    if isinstance(doc.get("entries"), dict):
        return {k: v for k, v in doc["entries"].items() if isinstance(v, dict) and "cells" in v}
    return {"earlier": doc} if "cells" in doc else {}


def _latest(entries: dict[str, dict]) -> dict | None:
    return max(entries.values(), key=lambda e: e.get("at", 0), default=None)


def _write_once(path, parse=None, read=read_json):
    """spec.json, metrics.json and predictions.npz are written once: re-read (and re-parse) them only when the
    file changed."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _WRITE_ONCE:
        if len(_WRITE_ONCE) > 20000:
            _WRITE_ONCE.clear()
        value = read(path)
        _WRITE_ONCE[key] = parse(value) if parse else value
    return _WRITE_ONCE[key]


def _parse_spec(header):
    """(RunSpec, None) or (None, why it cannot be read)."""
    if not isinstance(header, dict) or "spec" not in header:
        return None, "spec.json is not a run header (garbage, or not written by kdstudy)"
    try:
        return RunSpec.from_dict(header["spec"]), None
    except UsageError as exc:
        return None, f"spec.json: {exc}"


def read_record(store: RunStore, run_id: str) -> RunRecord:
    d = store.run_dir(run_id)
    parsed = _write_once(d / "spec.json", _parse_spec)
    spec, damage = parsed if parsed else (None, "spec.json is missing or unreadable")
    metrics = _write_once(d / "metrics.json")
    if metrics is not None and not isinstance(metrics, dict):
        metrics, damage = None, damage or "metrics.json is not a JSON object"
    if spec is not None and damage is None and metrics is None and (d / "metrics.json").exists():
        damage = "metrics.json is damaged (not valid JSON)"
    status = store.read_status(run_id)
    if damage is None and status.state == FINISHED and metrics is None:
        damage = "finished, but metrics.json is missing"
    shifts = shift_entries(_write_once(d / SHIFT)) if metrics is not None else {}
    explain = _write_once(d / EXPLAIN) if metrics is not None else None
    explain = explain if isinstance(explain, dict) and isinstance(explain.get("entries"), dict) else None
    return RunRecord(run_id=run_id, spec=spec, status=status, metrics=metrics, damage=damage, shift=_latest(shifts),
                     explain=explain, run_dir=d, shifts=shifts)


def finished_baseline(r: RunRecord, by_id: dict[str, RunRecord]) -> RunRecord | None:
    """A run's own baseline (the one run baseline_of names), when it is in ``by_id`` and finished: the pairing
    every table and gain uses."""
    base = by_id.get(r.baseline_id) if r.baseline_id else None
    return base if base is not None and base.finished else None


def collect(store: RunStore) -> list[RunRecord]:
    """Every run of the store (polled every second by the TUI: only status.json is re-read each time)."""
    return [read_record(store, rid) for rid in store.list_ids()]


def teacher_ids(records: list[RunRecord]) -> set[str]:
    """Run ids that serve as a teacher of some KD run among ``records``."""
    return {t for r in records for t in r.teacher_ids}


def distinct(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """The runs that compute different things, and the ids of those left out because they repeat another's
    computation: their specs differ only in a setting the run does not read, so today's identity makes them one run
    (a store trained before a run's identity held only what it reads: a tf-reg run at T=2 and one at T=4). Of each
    such set the tables keep one, so that a copy is never a second point, a second seed of a cell, or a second test
    in a family: a finished run first, then the one under today's id, then the first id. Runs without a readable
    spec are kept (the tables leave them out themselves)."""
    best: dict[str, RunRecord] = {}
    for r in records:
        if r.spec is None:
            continue
        key = r.spec.run_id
        rank = (not r.finished, r.run_id != key, r.run_id)
        if key not in best or rank < (not best[key].finished, best[key].run_id != key, best[key].run_id):
            best[key] = r
    kept = {r.run_id for r in best.values()}
    return ([r for r in records if r.spec is None or r.run_id in kept],
            [r.run_id for r in records if r.spec is not None and r.run_id not in kept])


def roles_of(records: list[RunRecord]) -> dict[str, set[str]]:
    """Each run's roles: ``student`` (a KD run), ``teacher`` (teaches one), ``baseline`` (is one, or stands alone)."""
    teachers = teacher_ids(records)
    baselines = {r.baseline_id for r in records if r.baseline_id}
    roles: dict[str, set[str]] = {}
    for r in records:
        if r.kind == "kd":
            roles[r.run_id] = {"student"}
        elif r.kind == "ce":
            mine = set()
            if r.run_id in teachers or r.regime == "defective":
                mine.add("teacher")
            if r.run_id in baselines or not mine:
                mine.add("baseline")
            roles[r.run_id] = mine
    return roles


def _read(spec: RunSpec) -> dict[str, Any]:
    """A run's identity less what it does not read (the identity holds such a key at its default, for store
    version 1's ids): Adam's momentum, a feature method's temperature. The method always tells KD runs apart
    (its default is left out of the run id alone)."""
    ident = spec.identity()
    ident["train"] = {k: v for k, v in ident["train"].items() if spec.train.reads(k)}
    if spec.kind == "kd":
        ident["kd"] = {"method": spec.kd.method,
                       **{k: v for k, v in ident["kd"].items() if spec.kd.reads(k, spec.strategy)}}
    return ident


def settings_identity(spec: RunSpec) -> dict[str, Any]:
    """A run's identity less its architecture, seed and strategy: the settings its comparisons must share.

    For a KD run the teachers' settings are part of it (``teacher.train.epochs`` ...), their models not; a
    teacher's defect threshold only where it has one (a normal teacher's is not "None", it does not apply)."""
    ident = _read(spec)
    for key in ("model", "seed", "kind", "strategy", "teachers", "defect_acc", "defect_check_every"):
        ident.pop(key, None)
    for i, t in enumerate(spec.teachers):
        ti = _read(t)
        for key in ("model", "seed", "kind"):
            ti.pop(key, None)
        if ti.get("defect_acc") is None:
            ti.pop("defect_acc", None)
        ident["teacher" if i == 0 else f"teacher{i + 1}"] = ti
    return ident


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# the identity keeps store version 1's layout (run ids depend on it); people read the study file's names
_READABLE = {"data.spec": "data.source", "train.image_size": "data.image_size"}


def flat_settings(spec: RunSpec) -> dict[str, Any]:
    """``settings_identity`` as dotted keys named as in a study file (``train.epochs``, ``data.image_size``,
    ``teacher.train.lr`` ...)."""
    flat = _flat(settings_identity(spec))
    return {readable_key(k): v for k, v in flat.items()}


def readable_key(key: str) -> str:
    """A setting's dotted key as a study file names it (``train.image_size`` is ``data.image_size``); a
    ``differences`` line ("train.image_size 32→48") keeps its values."""
    if " " in key:
        head, rest = key.split(" ", 1)
        return f"{readable_key(head)} {rest}"
    for old, new in _READABLE.items():
        if key == old or key.endswith("." + old):
            return key[: len(key) - len(old)] + new
    return key


def differing_keys(flats: list[dict[str, Any]]) -> list[str]:
    """The dotted keys whose values are not the same in all of ``flats``: what sets runs apart."""
    return sorted({k for f in flats for k in f if len({repr(g.get(k)) for g in flats}) > 1})


def settings_key(spec: RunSpec) -> str:
    blob = json.dumps(settings_identity(spec), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
